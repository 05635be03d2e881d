"""The training loop: structural dropout over sub-nets, then calibration and the per-sub-net table.

A run saves its training state (``last.pt``) every ``checkpoint_every`` steps, at every epoch end and on
SIGINT/SIGTERM; :func:`resume` continues from it. Everything random in a step is a function of (seed,
step) (sub-nets) or (seed, epoch, position) (data order, augmentation, crops), so a resumed run repeats
the uninterrupted one exactly.
"""

from __future__ import annotations

import csv
import math
import signal
import time
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from elasticnet.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from elasticnet.config import RunConfig, eval_batch_size, load_yaml, resolve_for_device, save_yaml
from elasticnet.data import build_datasets
from elasticnet.data.dataset import PatchDataset
from elasticnet.errors import UserError
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.reporting import markdown_table, plot_training_curve, text_table, write_csv
from elasticnet.runtime import seed_everything
from elasticnet.training import distributed
from elasticnet.training.calibration import spread_order
from elasticnet.training.evaluate import evaluate_calibrated, subnet_table
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.losses import distillation_loss, segmentation_loss
from elasticnet.training.order import EpochSampler
from elasticnet.training.precision import Precision, amp_note
from elasticnet.training.run_dir import (CONFIG_NAME, STATE_NAME, check_new_run_dir, remove_stale_temporaries,
                                         resumable_run, run_dir_for, run_lock)
from elasticnet.training.recipe import Recipe, StepOptions, sampler_for
from elasticnet.training.schedule import build_optimizer, cosine_with_warmup
from elasticnet.training.signals import StopRequest, TrainingInterrupted
from elasticnet.training.state import TrainingState

TABLE_COLUMNS = ["depth", "width", "channels", "params", "mflops", "dice", "iou", "dice_bn_as_trained", "dice_lesion",
                 "fp_area", "test_dice", "test_iou", "test_dice_bn_as_trained", "test_iou_bn_as_trained",
                 "test_dice_lesion", "test_fp_area"]


def table_columns(rows: Sequence[dict]) -> list[str]:
    """The columns of the sub-net table worth showing: those present in ``rows``."""
    return [c for c in TABLE_COLUMNS if rows and c in rows[0]]


class NonFiniteLoss(UserError):
    """The loss (or the weights) stopped being finite numbers."""


def forward_backward(model: ElasticUNet, images: torch.Tensor, masks: torch.Tensor, subnets: Sequence[SubNet],
                     distill_weight: float | None, dice: str = "image", precision: Precision | None = None,
                     check_finite: bool = True, weights: Sequence[float] | None = None,
                     teacher: torch.Tensor | None = None, distill_loss: str = "bce_dice") -> torch.Tensor:
    """Run each sub-net on the batch and accumulate its (weighted) gradients; returns the mean weighted loss
    (a 0-d tensor on the device: the caller reads it once per step, so a GPU is not synchronised per sub-net).

    With ``distill_weight``, every sub-net other than the largest also matches the ``teacher``
    probabilities: given (an EMA teacher's), or the largest sub-net's of this step, detached (taken from
    this step's largest forward, or computed without gradient when the largest is not among ``subnets``).
    ``precision`` runs the forward passes in bf16/fp16 (losses in fp32). With ``check_finite`` a non-finite
    loss on the CPU names its sub-net (on a GPU that check would synchronise; the caller checks the step's
    mean loss instead).
    """
    precision = precision or Precision("none", images.device.type)
    weights = [1.0] * len(subnets) if weights is None else list(weights)
    largest = model.config.largest
    total = torch.zeros((), device=images.device)
    for subnet, weight in zip(subnets, weights):
        with precision.autocast():
            logits = model(images, subnet)
        logits = logits.float()
        loss = segmentation_loss(logits, masks, dice)
        if distill_weight is not None:
            if subnet == largest:
                if teacher is None:  # the live teacher: this forward's probabilities
                    teacher = torch.sigmoid(logits).detach()
            else:
                if teacher is None:
                    with torch.no_grad(), precision.autocast():
                        teacher = torch.sigmoid(model(images, largest).float())
                loss = loss + distill_weight * distillation_loss(logits, teacher, dice, distill_loss)
        if check_finite and images.device.type == "cpu" and not torch.isfinite(loss):
            raise NonFiniteLoss(f"the loss became {loss.item()} at {subnet} (step's batch); lower --lr or check "
                                "the data for broken images")
        precision.backward(weight * loss)
        total = total + weight * loss.detach()
    return total / len(subnets)


EpochCallback = Callable[[dict], None]


def train(cfg: RunConfig, echo: Callable[[str], None] = print, progress: bool = True,
          on_epoch: EpochCallback | None = None) -> Path:
    """Train an elastic U-Net as ``cfg`` says; returns the run folder (config, checkpoint, log, table, plot).

    ``on_epoch(row)`` is called with every epoch's log row after the training state was saved (an
    exception it raises, e.g. a hyper-parameter search pruning the run, stops the run resumably)."""
    return _run(cfg, None, echo, progress, on_epoch)


def resume(path: str | Path, device: str | None = None, echo: Callable[[str], None] = print,
           progress: bool = True, on_epoch: EpochCallback | None = None) -> Path:
    """Continue the interrupted run in folder ``path`` from its last saved state (``last.pt``), with the
    config it started with (``device`` may be changed). With a fixed seed the result equals an
    uninterrupted run's."""
    run_dir = resumable_run(path)
    # config.yaml is the config the run started with (last.pt holds the same; it is loaded once, later)
    cfg = RunConfig.from_dict(load_yaml(run_dir / CONFIG_NAME), source=str(run_dir / CONFIG_NAME))
    if device is not None:
        cfg.train.device = device
    cfg.train.out = str(run_dir)
    return _run(cfg, run_dir, echo, progress, on_epoch)


def _run(cfg: RunConfig, resume_dir: Path | None, echo: Callable[[str], None], progress: bool,
         on_epoch: EpochCallback | None = None) -> Path:
    t_cfg = cfg.train
    d, device = distributed.init(t_cfg.device)  # one process, or one rank of a torchrun launch
    try:
        cfg = resolve_for_device(cfg, device.type)
        seed_everything(t_cfg.seed)
        # Everything that can refuse the config or the data runs before any file is written.
        sampler_for(cfg)  # refuses bad sampling options (the run's own sampler comes with its Recipe)
        split = build_datasets(cfg.data, cfg.model.in_channels, t_cfg.seed)
        run_dir = Path(distributed.broadcast_object(str(resume_dir or run_dir_for(t_cfg.out)), d))
        with run_lock(run_dir) if d.main else nullcontext():
            problem = None
            if d.main:
                try:
                    if resume_dir is None:
                        check_new_run_dir(run_dir)
                        save_yaml(cfg, run_dir / CONFIG_NAME)
                        write_csv(split.rows, run_dir / "split.csv")
                    else:
                        remove_stale_temporaries(run_dir)
                        check_same_split(split.rows, run_dir / "split.csv")
                except UserError as e:
                    problem = str(e)
            problem = distributed.broadcast_object(problem, d)  # every rank stops on rank 0's refusal
            if problem is not None:
                raise UserError(problem)
            with StopRequest() as stop:
                return _train_in(run_dir, cfg, split, device, stop, echo if d.main else _silent,
                                 progress and d.main, on_epoch, d)
    finally:
        distributed.shutdown()


def _interrupted(stop: StopRequest, when: str, run_dir: Path) -> TrainingInterrupted:
    """The exception that ends a run stopped by a signal, after its state was saved."""
    signum = stop.signum or signal.SIGTERM  # under torchrun another rank may have received it
    return TrainingInterrupted(f"stopped by {signal.Signals(signum).name} {when}; saved the training state; continue "
                               f"with `elasticnet train --resume {run_dir}`", signum)


def _silent(line: str) -> None:
    pass


def check_same_split(rows: list[dict], path: Path) -> None:
    """Refuse to resume on data that differs from what the run started with."""
    with open(path, newline="") as f:
        saved = list(csv.DictReader(f))
    if saved != [{k: str(v) for k, v in r.items()} for r in rows]:
        raise UserError(f"the data differ from those the run started with (see {path}); resume needs the same "
                        "images and split")


def evaluation_setup(split, cfg: RunConfig, batch_size: int, d: distributed.Dist | None = None
                     ) -> tuple[DataLoader, DataLoader, DataLoader | None, int]:
    """(calibration, validation, test loaders, calibration batches) of a run whose per-process training batch
    is ``batch_size``: evaluation runs in batches of :func:`eval_batch_size`, and BN calibration sees as many
    images as ``calib_batches`` training batches, whatever that evaluation batch is."""
    t = cfg.train
    eval_batch = eval_batch_size(cfg)
    loaders = evaluation_loaders(split, eval_batch, t.seed, d, t.calib_batches * batch_size)
    return (*loaders, calibration_batches(t.calib_batches, batch_size, eval_batch))


def evaluation_loaders(split, batch_size: int, seed: int, d: distributed.Dist | None = None,
                       calib_images: int | None = None) -> tuple[DataLoader, DataLoader, DataLoader | None]:
    """(calibration, validation, test) loaders. BN calibration sees training images without augmentation,
    in a fixed seeded order spread over the whole set, at most ``calib_images`` of them per process; each
    data-parallel rank calibrates on its share (the statistics are pooled)."""
    rank, world = (d.rank, d.world) if d is not None else (0, 1)
    train_images = split.train.base if isinstance(split.train, PatchDataset) else split.train
    share = spread_order(len(train_images), seed)[rank::world][:calib_images]
    calib = DataLoader(train_images.subset(share), batch_size=batch_size, shuffle=False)
    val = DataLoader(split.val, batch_size=batch_size, shuffle=False)
    test = DataLoader(split.test, batch_size=batch_size, shuffle=False) if split.test is not None else None
    return calib, val, test


def write_table(run_dir: Path, cfg: RunConfig, rows: list[dict]) -> None:
    """The sub-net table of a run: subnets.csv and subnets.md."""
    write_csv(rows, run_dir / "subnets.csv")
    (run_dir / "subnets.md").write_text(
        f"Validation ({rows[0]['val_images']} images"
        + (f"; test: {rows[0]['test_images']} images" if "test_images" in rows[0] else "")
        + f"), per-image mean Dice/IoU at threshold {cfg.train.threshold}; "
        f"BN re-estimated per sub-net on {rows[0]['calib_batches']} training batches "
        f"(`dice_bn_as_trained`: without). `dice_lesion`: mean over images with a lesion; `fp_area`: predicted "
        f"area fraction on images without one. MFLOPs at {cfg.data.image_size[0]}x{cfg.data.image_size[1]}.\n\n"
        + markdown_table(rows, table_columns(rows)))


def recalibrate(path: str | Path, device: str = "auto", echo: Callable[[str], None] = print) -> Path:
    """Re-estimate every sub-net's BN statistics and rewrite the sub-net table of a finished run with this
    version's evaluation: subnets.csv, subnets.md, and the table and calibrated statistics in its checkpoint
    (what export uses). The weights are left as trained. For runs evaluated by an older elasticnet."""
    from elasticnet.checkpoint import model_from_checkpoint, resolve_checkpoint, saved_state
    from elasticnet.runtime import select_device

    checkpoint = resolve_checkpoint(path)
    run_dir = checkpoint.parent
    with run_lock(run_dir):
        ckpt = load_checkpoint(checkpoint)
        cfg, model = model_from_checkpoint(ckpt, select_device(device))
        t_cfg = cfg.train
        split = build_datasets(cfg.data, cfg.model.in_channels, t_cfg.seed)
        check_same_split(split.rows, run_dir / "split.csv")
        calib_loader, val_loader, test_loader, calib_batches = evaluation_setup(split, cfg, t_cfg.batch_size)
        echo(f"calibrating BatchNorm ({calib_batches} batches of {eval_batch_size(cfg)}) and evaluating "
             f"{len(cfg.model.subnets())} sub-nets of {run_dir} ...")
        rows, bn_stats = subnet_table(model, calib_loader, val_loader, next(model.parameters()).device,
                                      tuple(cfg.data.image_size), calib_batches, t_cfg.threshold, test_loader,
                                      cfg.data.tile)
        write_table(run_dir, cfg, rows)
        save_checkpoint(checkpoint, cfg, model.cpu(), **(saved_state(ckpt) | {"subnets": rows, "bn_stats": bn_stats}))
    echo(text_table(rows, table_columns(rows)))
    return run_dir


def train_step(model: ElasticUNet, optimizer: torch.optim.Optimizer, precision: Precision,
               freezer: InactiveWeightFreezer | None, images: torch.Tensor, masks: torch.Tensor,
               subnets: Sequence[SubNet], options: StepOptions | None = None, d: distributed.Dist | None = None,
               weights: Sequence[float] | None = None, teacher: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step over ``subnets`` (their weighted gradients summed); returns the mean loss on the
    device.

    The freezer, when given, puts back the entries of the weights (and optimiser moments) that none of
    ``subnets`` used, which the optimiser would otherwise move (see :mod:`elasticnet.training.inactive`).
    """
    options = options or StepOptions()
    optimizer.zero_grad(set_to_none=True)
    enabled = d is not None and d.enabled
    loss = forward_backward(model, images, masks, subnets, options.distill_weight, options.dice, precision,
                            check_finite=not enabled, weights=weights, teacher=teacher,
                            distill_loss=options.distill_loss)
    if enabled:
        distributed.average_gradients(model, d)
    with freezer.step(subnets) if freezer is not None else nullcontext():
        precision.step(optimizer, model.parameters() if options.grad_clip else None, options.grad_clip)
    return loss


def calibration_batches(calib_batches: int, batch_size: int, eval_batch_size: int) -> int:
    """Batches of ``eval_batch_size`` that hold as many images as ``calib_batches`` training batches (BN
    calibration sees the same images whatever the evaluation batch size; the loader holds no more)."""
    return max(1, -(-calib_batches * batch_size // eval_batch_size))


def kept_state(state_path: Path) -> str:
    """The end of a non-finite-loss message: where the last good state is, if one was saved yet."""
    if state_path.exists():
        return f"kept the last good training state in {state_path}"
    return "no training state had been saved yet (the run stopped before its first save)"


def _train_in(run_dir: Path, cfg: RunConfig, split, device: torch.device, stop: StopRequest,
              echo: Callable[[str], None], progress: bool, on_epoch: EpochCallback | None, d: distributed.Dist) -> Path:
    t_cfg = cfg.train
    model = ElasticUNet(cfg.model).to(device)
    model.grad_checkpoint = t_cfg.grad_checkpoint
    memory_format = torch.channels_last if t_cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    distributed.set_sync_bn(model, t_cfg.sync_bn and d.enabled)
    pool = (lambda: distributed.pool_bn_statistics(model, d)) if d.enabled else None
    precision = Precision.for_device(t_cfg.amp, device)
    order = EpochSampler(len(split.train), t_cfg.seed, d.rank, d.world)
    batch_size = min(t_cfg.batch_size, order.per_process())
    train_loader = DataLoader(split.train, batch_size=batch_size, sampler=order, drop_last=True,
                              num_workers=cfg.data.num_workers)
    calib_loader, val_loader, test_loader, calib_batches = evaluation_setup(split, cfg, batch_size, d)
    eval_batch = eval_batch_size(cfg)
    # the per-epoch look at the extremes calibrates on the images of at most 4 training batches
    quick_batches = calibration_batches(min(4, t_cfg.calib_batches), batch_size, eval_batch)
    tile = cfg.data.tile  # sliding-window evaluation of patch-trained models

    steps_per_epoch = order.per_process() // batch_size
    total_steps = t_cfg.epochs * steps_per_epoch
    if t_cfg.max_steps:
        total_steps = min(total_steps, t_cfg.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    optimizer = build_optimizer(t_cfg.optimizer, model.parameters(), t_cfg.lr, t_cfg.weight_decay)
    # warm-up: one epoch, or 1/20 of a shorter run
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(total_steps, min(steps_per_epoch, max(1, total_steps // 20)), t_cfg.lr_floor))
    freezer = InactiveWeightFreezer(model, optimizer) if t_cfg.inactive_weights == "freeze" else None
    train_size = cfg.data.tile or tuple(cfg.data.image_size)  # what one training image is (a patch or the image)
    recipe = Recipe(cfg, model, total_steps, train_size)
    sampler = recipe.sampler

    state = TrainingState(world=d.world, steps_per_epoch=steps_per_epoch, batch_size=batch_size)
    state_path = run_dir / STATE_NAME
    if state_path.exists():
        state.restore(load_checkpoint(state_path), model, optimizer, scheduler, precision.scaler, recipe.teacher)
        note = state.adapt(d.world, steps_per_epoch, batch_size, scheduler)
        echo(f"resuming {run_dir} at step {state.step}/{total_steps} (epoch {len(state.log) + 1}){note}")

    def save_state() -> None:
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise NonFiniteLoss(f"the weights became non-finite before step {state.step}; {kept_state(state_path)}. "
                                "Lower --lr, or check the data")
        if d.main:
            save_checkpoint(state_path, cfg, model, **state.payload(optimizer, scheduler, precision, recipe.teacher))

    echo(f"run folder {run_dir} | device {device}{f' x {d.world} processes' if d.enabled else ''} | "
         f"precision {amp_note(t_cfg.amp, precision.used, device)} | "
         f"{len(split.train)} train / {len(split.val)} val images "
         f"at {cfg.data.image_size[0]}x{cfg.data.image_size[1]} | {total_steps} steps | strategy {t_cfg.strategy}"
         f"{' + distill' if t_cfg.distill else ''} | sub-nets {len(sampler.choices)}")
    while len(state.log) < epochs:
        epoch = len(state.log) + 1
        end = min(epoch * steps_per_epoch, total_steps)
        order.set_epoch(epoch, (state.step - (epoch - 1) * steps_per_epoch) * batch_size)
        model.train()
        resumed_at = time.perf_counter()
        bar = tqdm(train_loader if state.step < end else [], desc=f"epoch {epoch}/{epochs}", leave=False,
                   disable=not progress, initial=len(state.epoch_losses), total=end - (epoch - 1) * steps_per_epoch,
                   unit="batch")
        for images, masks in bar:
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            masks = masks.to(device, non_blocking=True)
            plan = recipe.plan(state.step)
            try:
                loss = train_step(model, optimizer, precision, freezer, images, masks, plan.subnets, plan.options, d,
                                  plan.weights, recipe.teacher_probabilities(plan, images, precision))
                loss, stopping = distributed.reduce_step(float(loss), bool(stop), d, device)  # one read per step
                if not math.isfinite(loss):
                    raise NonFiniteLoss(f"the loss became {loss} at step {state.step + 1}; lower --lr or check the "
                                        "data for broken images")
            except NonFiniteLoss as e:
                raise NonFiniteLoss(f"{e}; {kept_state(state_path)}") from None
            recipe.after_step(model)
            scheduler.step()
            state.step += 1
            state.train_flops += recipe.step_flops(plan, images.shape[0] * d.world)
            state.epoch_losses.append(loss)
            state.epoch_images += images.shape[0] * d.world
            elapsed = state.epoch_seconds + time.perf_counter() - resumed_at
            bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{state.epoch_images / elapsed:.1f}")
            if stopping or (t_cfg.checkpoint_every and state.step % t_cfg.checkpoint_every == 0):
                state.add_time(time.perf_counter() - resumed_at)
                resumed_at = time.perf_counter()
                save_state()
                if stopping:
                    raise _interrupted(stop, f"at step {state.step}", run_dir)
            if state.step >= end:
                break
        bar.close()
        state.add_time(time.perf_counter() - resumed_at)
        # A quick look at the two extremes, with BN re-estimated on a few batches (shared statistics
        # mix all sub-nets and say little about any one of them).
        quick = {s: evaluate_calibrated(model, s, calib_loader, val_loader, device, quick_batches,
                                        t_cfg.threshold, tile, pool)["dice"] for s in dict.fromkeys((sampler.largest, sampler.smallest))}
        row = state.end_epoch(epoch, quick[sampler.largest], quick[sampler.smallest], scheduler.get_last_lr()[0])
        if d.main:
            write_csv(state.log, run_dir / "log.csv")
        save_state()
        echo(f"epoch {epoch}/{epochs}  loss {row['train_loss']:.4f}  val Dice largest {row['val_dice_largest']:.3f} "
             f"smallest {row['val_dice_smallest']:.3f}  ({row['seconds']:.1f} s, {row['images_per_s']:.1f} img/s)")
        _, stopping = distributed.reduce_step(0.0, bool(stop), d, device)
        if stopping:
            raise _interrupted(stop, f"after epoch {epoch}", run_dir)
        if on_epoch is not None:
            on_epoch(row)
    stop.immediate = True  # the state is on disk: a signal from here on stops at once
    model.to(memory_format=torch.contiguous_format)  # the checkpoint and the table use the plain layout
    rows, bn_stats = [], {}
    if t_cfg.final_table:
        echo(f"calibrating BatchNorm ({calib_batches} batches of {eval_batch}) and evaluating "
             f"{len(sampler.choices)} sub-nets ...")
        rows, bn_stats = subnet_table(model, calib_loader, val_loader, device, tuple(cfg.data.image_size),
                                      calib_batches, t_cfg.threshold, test_loader, tile, pool=pool)
    if not d.main:
        return run_dir
    plot_training_curve(state.log, run_dir / "curve.png")
    if rows:
        write_table(run_dir, cfg, rows)
    save_checkpoint(run_dir / CHECKPOINT_NAME, cfg, model, optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(), step=state.step, epoch=len(state.log), subnets=rows,
                    bn_stats=bn_stats, log=state.log, train_seconds=round(state.train_seconds, 4),
                    train_tflops=round(state.train_flops / 1e12, 4), precision=precision.name)
    state_path.unlink(missing_ok=True)  # checkpoint.pt supersedes it
    if rows:
        echo("\nper-sub-net validation results (mean over images of per-image Dice/IoU at threshold "
             f"{t_cfg.threshold}, BN re-estimated per sub-net):\n" + text_table(rows, table_columns(rows)))
        echo(f"\ntrained in {state.train_seconds:.0f} s ({precision.name}); wrote {run_dir}/ (checkpoint.pt, "
             "config.yaml, log.csv, subnets.csv, subnets.md, split.csv, curve.png)")
    else:
        echo(f"\ntrained in {state.train_seconds:.0f} s ({precision.name}); no sub-net table (--no-final-table): "
             f"`elasticnet eval --checkpoint {run_dir} --recalibrate` makes it; wrote {run_dir}/ (checkpoint.pt, "
             "config.yaml, log.csv, split.csv, curve.png)")
    return run_dir
