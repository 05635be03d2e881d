"""The training loop: structural dropout over sub-nets, then calibration and the per-sub-net table.

A run saves its training state (``last.pt``) every ``checkpoint_every`` steps, at every epoch end and on
SIGINT/SIGTERM; :func:`resume` continues from it. Everything random in a step is a function of (seed,
step) (sub-nets) or (seed, epoch, position) (data order, augmentation, crops), so a resumed run repeats
the uninterrupted one exactly.

The loop reads as its named parts: :func:`run_epoch` (the steps of one epoch), :func:`one_step`,
:func:`end_epoch` (log row, saved state, the per-epoch look at the extremes) and :func:`finish` (table and
checkpoint). What a step does comes from the run's :class:`~elasticnet.training.recipe.Recipe`; the objects it
works with are built once by :func:`~elasticnet.training.setup.build_training`.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from tqdm import tqdm

from elasticnet.checkpoint import save_checkpoint
from elasticnet.config import RunConfig, eval_batch_size, load_yaml, resolve_for_device, save_yaml
from elasticnet.data import build_datasets
from elasticnet.errors import UserError
from elasticnet.reporting import plot_training_curve, text_table, write_csv
from elasticnet.run_files import CHECKPOINT_NAME, CONFIG_NAME, CURVE_NAME, LOG_NAME, SPLIT_NAME
from elasticnet.runtime import backend_settings, seed_everything
from elasticnet.training import distributed
from elasticnet.training.evaluate import evaluate_calibrated, subnet_table
from elasticnet.training.precision import amp_note
from elasticnet.training.recipe import sampler_for
from elasticnet.training.run_dir import (
    check_new_run_dir,
    check_same_split,
    remove_stale_temporaries,
    resumable_run,
    run_dir_for,
    run_lock,
)
from elasticnet.training.setup import Training, build_training, restore
from elasticnet.training.signals import StopRequest, TrainingInterrupted
from elasticnet.training.step import NonFiniteLoss, train_step
from elasticnet.training.tables import table_columns, write_table

EpochCallback = Callable[[dict], None]


def train(
    cfg: RunConfig, echo: Callable[[str], None] = print, progress: bool = True, on_epoch: EpochCallback | None = None
) -> Path:
    """Train an elastic U-Net as ``cfg`` says; returns the run folder (config, checkpoint, log, table, plot).

    ``on_epoch(row)`` is called with every epoch's log row after the training state was saved (an
    exception it raises, e.g. a hyper-parameter search pruning the run, stops the run resumably)."""
    return _run(cfg, None, echo, progress, on_epoch)


def resume(
    path: str | Path,
    device: str | None = None,
    echo: Callable[[str], None] = print,
    progress: bool = True,
    on_epoch: EpochCallback | None = None,
) -> Path:
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


def _run(
    cfg: RunConfig,
    resume_dir: Path | None,
    echo: Callable[[str], None],
    progress: bool,
    on_epoch: EpochCallback | None = None,
) -> Path:
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
                        write_csv(split.rows, run_dir / SPLIT_NAME)
                    else:
                        remove_stale_temporaries(run_dir)
                        check_same_split(split.rows, run_dir / SPLIT_NAME)
                except UserError as e:
                    problem = str(e)
            problem = distributed.broadcast_object(problem, d)  # every rank stops on rank 0's refusal
            if problem is not None:
                raise UserError(problem)
            with StopRequest() as stop, backend_settings(t_cfg.deterministic):
                training = build_training(cfg, split, run_dir, device, d)
                return fit(training, stop, echo if d.main else _silent, progress and d.main, on_epoch)
    finally:
        distributed.shutdown()


def _interrupted(stop: StopRequest, when: str, run_dir: Path) -> TrainingInterrupted:
    """The exception that ends a run stopped by a signal, after its state was saved."""
    signum = stop.signum or signal.SIGTERM  # under torchrun another rank may have received it
    return TrainingInterrupted(
        f"stopped by {signal.Signals(signum).name} {when}; saved the training state; continue "
        f"with `elasticnet train --resume {run_dir}`",
        signum,
    )


def _silent(line: str) -> None:
    pass


def kept_state(state_path: Path) -> str:
    """The end of a non-finite-loss message: where the last good state is, if one was saved yet."""
    if state_path.exists():
        return f"kept the last good training state in {state_path}"
    return "no training state had been saved yet (the run stopped before its first save)"


def save_state(tr: Training) -> None:
    """Write ``last.pt`` (rank 0), after checking the weights are still numbers."""
    if not all(bool(torch.isfinite(p).all()) for p in tr.model.parameters()):
        raise NonFiniteLoss(
            f"the weights became non-finite before step {tr.state.step}; {kept_state(tr.state_path)}. "
            "Lower --lr, or check the data"
        )
    if tr.d.main:
        save_checkpoint(
            tr.state_path,
            tr.cfg,
            tr.model,
            **tr.state.payload(tr.optimizer, tr.scheduler, tr.precision, tr.recipe.teacher),
        )


def fit(
    tr: Training, stop: StopRequest, echo: Callable[[str], None], progress: bool, on_epoch: EpochCallback | None
) -> Path:
    """Train ``tr`` from wherever its state stands to the end, then write the table and the checkpoint."""
    note = restore(tr)
    if note:
        echo(note)
    cfg = tr.cfg
    echo(
        f"run folder {tr.run_dir} | device {tr.device}{f' x {tr.d.world} processes' if tr.d.enabled else ''} | "
        f"precision {amp_note(cfg.train.amp, tr.precision.used, tr.device)} | "
        f"{len(tr.train_loader.dataset)} train / {len(tr.val_loader.dataset)} val images "
        f"at {cfg.data.image_size[0]}x{cfg.data.image_size[1]} | {tr.total_steps} steps | "
        f"strategy {cfg.train.strategy}{' + distill' if cfg.train.distill else ''} | "
        f"sub-nets {len(tr.recipe.sampler.choices)}"
    )
    while len(tr.state.log) < tr.epochs:
        run_epoch(tr, stop, progress)
        end_epoch(tr, stop, echo, on_epoch)
    stop.immediate = True  # the state is on disk: a signal from here on stops at once
    return finish(tr, echo)


def run_epoch(tr: Training, stop: StopRequest, progress: bool) -> None:
    """The steps of the current epoch (from where a resumed run stopped inside it)."""
    state, epoch, end = tr.state, len(tr.state.log) + 1, tr.epoch_end_step
    # a run resumed inside an epoch skips the images its finished steps used (the order is a function of
    # (seed, epoch, position), so the rest of the epoch is the same as in an uninterrupted run)
    tr.order.set_epoch(epoch, (state.step - (epoch - 1) * tr.steps_per_epoch) * tr.batch_size)
    tr.model.train()
    resumed_at = time.perf_counter()
    bar = tqdm(
        tr.train_loader if state.step < end else [],
        desc=f"epoch {epoch}/{tr.epochs}",
        leave=False,
        disable=not progress,
        initial=len(state.epoch_losses),
        total=end - (epoch - 1) * tr.steps_per_epoch,
        unit="batch",
    )
    for images, masks in bar:
        images = images.to(tr.device, non_blocking=True).contiguous(memory_format=tr.memory_format)
        loss, stopping = one_step(tr, images, masks.to(tr.device, non_blocking=True), stop)
        elapsed = state.epoch_seconds + time.perf_counter() - resumed_at
        bar.set_postfix(loss=f"{loss:.3f}", img_s=f"{state.epoch_images / elapsed:.1f}")
        if stopping or (tr.cfg.train.checkpoint_every and state.step % tr.cfg.train.checkpoint_every == 0):
            state.add_time(time.perf_counter() - resumed_at)
            resumed_at = time.perf_counter()
            save_state(tr)
            if stopping:
                raise _interrupted(stop, f"at step {state.step}", tr.run_dir)
        if state.step >= end:
            break
    bar.close()
    state.add_time(time.perf_counter() - resumed_at)


def one_step(tr: Training, images: torch.Tensor, masks: torch.Tensor, stop: StopRequest) -> tuple[float, bool]:
    """One planned optimiser step; returns (the step's loss, whether any process was asked to stop)."""
    state, plan = tr.state, tr.recipe.plan(tr.state.step)
    try:
        loss = train_step(
            tr.model,
            tr.optimizer,
            tr.precision,
            tr.freezer,
            images,
            masks,
            plan.subnets,
            plan.options,
            tr.d,
            plan.weights,
            tr.recipe.teacher_probabilities(plan, images, tr.precision),
        )
        loss, stopping = distributed.reduce_step(float(loss), bool(stop), tr.d, tr.device)  # one read per step
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"the loss became {loss} at step {state.step + 1}; lower --lr or check the data for broken images"
            )
    except NonFiniteLoss as e:
        raise NonFiniteLoss(f"{e}; {kept_state(tr.state_path)}") from None
    tr.recipe.after_step(tr.model)
    tr.scheduler.step()
    state.step += 1
    state.train_flops += tr.recipe.step_flops(plan, images.shape[0] * tr.d.world)
    state.epoch_losses.append(loss)
    state.epoch_images += images.shape[0] * tr.d.world
    return loss, stopping


def end_epoch(tr: Training, stop: StopRequest, echo: Callable[[str], None], on_epoch: EpochCallback | None) -> None:
    """The epoch's log row (with a quick look at the largest and smallest sub-net), the saved state."""
    epoch, sampler, t = len(tr.state.log) + 1, tr.recipe.sampler, tr.cfg.train
    # BN re-estimated on a few batches: the shared statistics mix all sub-nets and say little about any one
    quick = {
        s: evaluate_calibrated(
            tr.model,
            s,
            tr.calib_loader,
            tr.val_loader,
            tr.device,
            tr.quick_batches,
            t.threshold,
            tr.cfg.data.tile,
            bn_pool(tr),
        )["dice"]
        for s in dict.fromkeys((sampler.largest, sampler.smallest))
    }  # one evaluation when they coincide
    row = tr.state.end_epoch(epoch, quick[sampler.largest], quick[sampler.smallest], tr.scheduler.get_last_lr()[0])
    if tr.d.main:
        write_csv(tr.state.log, tr.run_dir / LOG_NAME)
    save_state(tr)
    echo(
        f"epoch {epoch}/{tr.epochs}  loss {row['train_loss']:.4f}  val Dice largest {row['val_dice_largest']:.3f} "
        f"smallest {row['val_dice_smallest']:.3f}  ({row['seconds']:.1f} s, {row['images_per_s']:.1f} img/s)"
    )
    _, stopping = distributed.reduce_step(0.0, bool(stop), tr.d, tr.device)
    if stopping:
        raise _interrupted(stop, f"after epoch {epoch}", tr.run_dir)
    if on_epoch is not None:
        on_epoch(row)


def bn_pool(tr: Training) -> Callable[[], None] | None:
    """After BN calibration in data-parallel training: average the statistics over the processes."""
    return (lambda: distributed.pool_bn_statistics(tr.model, tr.d)) if tr.d.enabled else None


def finish(tr: Training, echo: Callable[[str], None]) -> Path:
    """The per-sub-net table (unless ``--no-final-table``), the checkpoint, and the run's summary."""
    cfg, state, model = tr.cfg, tr.state, tr.model
    model.to(memory_format=torch.contiguous_format)  # the checkpoint and the table use the plain layout
    rows, bn_stats = [], {}
    if cfg.train.final_table:
        echo(
            f"calibrating BatchNorm ({tr.calib_batches} batches of {eval_batch_size(cfg)}) and evaluating "
            f"{len(tr.recipe.sampler.choices)} sub-nets ..."
        )
        rows, bn_stats = subnet_table(
            model,
            tr.calib_loader,
            tr.val_loader,
            tr.device,
            tuple(cfg.data.image_size),
            tr.calib_batches,
            cfg.train.threshold,
            tr.test_loader,
            cfg.data.tile,
            pool=bn_pool(tr),
            detection=cfg.train.lesion_detection,
        )
    if not tr.d.main:
        return tr.run_dir
    plot_training_curve(state.log, tr.run_dir / CURVE_NAME)
    if rows:
        write_table(tr.run_dir, cfg, rows)
    save_checkpoint(
        tr.run_dir / CHECKPOINT_NAME,
        cfg,
        model,
        **state.final_payload(tr.optimizer, tr.scheduler, tr.precision, rows, bn_stats),
    )
    tr.state_path.unlink(missing_ok=True)  # checkpoint.pt supersedes it
    if rows:
        echo(
            "\nper-sub-net validation results (mean over images of per-image Dice/IoU at threshold "
            f"{cfg.train.threshold}, BN re-estimated per sub-net):\n" + text_table(rows, table_columns(rows))
        )
        echo(
            f"\ntrained in {state.train_seconds:.0f} s ({tr.precision.name}); wrote {tr.run_dir}/ (checkpoint.pt, "
            "config.yaml, log.csv, subnets.csv, subnets.md, split.csv, curve.png)"
        )
    else:
        echo(
            f"\ntrained in {state.train_seconds:.0f} s ({tr.precision.name}); no sub-net table (--no-final-table): "
            f"`elasticnet eval --checkpoint {tr.run_dir} --recalibrate` makes it; wrote {tr.run_dir}/ (checkpoint.pt, "
            "config.yaml, log.csv, split.csv, curve.png)"
        )
    return tr.run_dir
