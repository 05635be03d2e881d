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

from elasticnet.config import RunConfig, load_yaml, resolve_for_device
from elasticnet.data import build_datasets
from elasticnet.errors import UserError
from elasticnet.files import check_outside_data
from elasticnet.reporting import write_csv
from elasticnet.run_files import CONFIG_NAME, LOG_NAME
from elasticnet.runtime import backend_settings, seed_everything
from elasticnet.training import distributed
from elasticnet.training.persist import bn_pool, finish, kept_state, save_state
from elasticnet.training.recipe import sampler_for
from elasticnet.training.run_dir import open_run_dir, resumable_run, run_dir_for, run_lock
from elasticnet.training.setup import Training, build_training, restore
from elasticnet.training.signals import StopRequest, TrainingInterrupted
from elasticnet.training.step import NonFiniteLoss, train_step

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
    data: str | None = None,
) -> Path:
    """Continue the interrupted run in folder ``path`` from its last saved state (``last.pt``), with the
    config it started with (``device`` may be changed; ``data``, where the data moved: the images and split
    must be the same, which the run's split.csv checks). With a fixed seed the result equals an
    uninterrupted run's."""
    run_dir = resumable_run(path)
    # config.yaml is the config the run started with (last.pt holds the same; it is loaded once, later)
    cfg = RunConfig.from_saved(load_yaml(run_dir / CONFIG_NAME), source=str(run_dir / CONFIG_NAME))
    if device is not None:
        cfg.train.device = device
    if data is not None:
        cfg.data.data = data
        check_outside_data(run_dir, data, "the run folder")
    elif cfg.data.data != "synthetic" and not Path(cfg.data.data).exists():
        raise UserError(
            f"the data folder {cfg.data.data} the run trained on does not exist any more; if it moved, give its "
            f"new place: elasticnet train --resume {run_dir} --data NEW-PLACE"
        )
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
    dist, device = distributed.init(t_cfg.device)  # one process, or one rank of a torchrun launch
    try:
        cfg = resolve_for_device(cfg, device.type)
        seed_everything(t_cfg.seed)
        # Everything that can refuse the config or the data runs before any file is written.
        sampler_for(cfg)  # refuses bad sampling options (the run's own sampler comes with its Recipe)
        split = build_datasets(cfg.data, cfg.model.in_channels, t_cfg.seed, require_lesions=True)
        run_dir = Path(distributed.broadcast_object(str(resume_dir or run_dir_for(t_cfg.out)), dist))
        if resume_dir is None:
            check_outside_data(run_dir, cfg.data.data, "the run folder")
        with run_lock(run_dir) if dist.main else nullcontext():
            problem = open_run_dir(run_dir, cfg, split.rows, resume_dir is not None) if dist.main else None
            problem = distributed.broadcast_object(problem, dist)  # every rank stops on rank 0's refusal
            if problem is not None:
                raise UserError(problem)
            with StopRequest() as stop, backend_settings(t_cfg.deterministic):
                training = build_training(cfg, split, run_dir, device, dist)
                return fit(training, stop, echo if dist.main else _silent, progress and dist.main, on_epoch)
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


def fit(
    tr: Training, stop: StopRequest, echo: Callable[[str], None], progress: bool, on_epoch: EpochCallback | None
) -> Path:
    """Train ``tr`` from wherever its state stands to the end, then write the table and the checkpoint."""
    note = restore(tr)
    if note:
        echo(note)
    echo(tr.describe())
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
            tr.dist,
            plan.weights,
            tr.recipe.teacher_probabilities(plan, images, tr.precision),
        )
        loss, stopping = distributed.reduce_step(float(loss), bool(stop), tr.dist, tr.device)  # one read per step
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"the loss became {loss} at step {state.step + 1}; lower --lr or check the data for broken images"
            )
    except NonFiniteLoss as e:
        raise NonFiniteLoss(f"{e}; {kept_state(tr.state_path)}") from None
    tr.recipe.after_step(tr.model)
    tr.scheduler.step()
    state.step += 1
    state.train_flops += tr.recipe.step_flops(plan, images.shape[0] * tr.dist.world)
    state.epoch_losses.append(loss)
    state.epoch_images += images.shape[0] * tr.dist.world
    return loss, stopping


def end_epoch(tr: Training, stop: StopRequest, echo: Callable[[str], None], on_epoch: EpochCallback | None) -> None:
    """The epoch's log row (with a quick look at the largest and smallest sub-net), the saved state."""
    epoch, sampler = len(tr.state.log) + 1, tr.recipe.sampler
    quick = tr.quick_look(bn_pool(tr))
    row = tr.state.end_epoch(epoch, quick[sampler.largest], quick[sampler.smallest], tr.scheduler.get_last_lr()[0])
    if tr.dist.main:
        write_csv(tr.state.log, tr.run_dir / LOG_NAME)
    mined = mine_hard_negatives(tr) if tr.miner is not None and epoch < tr.epochs else ""
    save_state(tr)
    echo(
        f"epoch {epoch}/{tr.epochs}  loss {row['train_loss']:.4f}  val Dice largest {row['val_dice_largest']:.3f} "
        f"smallest {row['val_dice_smallest']:.3f}  ({row['seconds']:.1f} s, {row['images_per_s']:.1f} img/s)"
        + (f"  {mined}" if mined else "")
    )
    _, stopping = distributed.reduce_step(0.0, bool(stop), tr.dist, tr.device)
    if stopping:
        raise _interrupted(stop, f"after epoch {epoch}", tr.run_dir)
    if on_epoch is not None:
        on_epoch(row)


def mine_hard_negatives(tr: Training) -> str:
    """The next epoch's hard negatives (saved with the state that follows); their time counts as training
    time (not their FLOPs: ``train_tflops`` counts training passes)."""
    started = time.perf_counter()
    note = tr.miner.update(tr.model, tr.calib_loader, tr.quick_batches, tr.device, bn_pool(tr), tr.precision.autocast)
    tr.state.train_seconds += time.perf_counter() - started
    return note
