"""Everything a training run works with, built in one place from its config: the model, the optimiser and
its schedule, precision, the inactive-weight freezer, the per-step recipe, the loaders and the state.

The loop (:mod:`elasticnet.training.trainer`) only uses these objects; a new training rule goes into the
:class:`~elasticnet.training.recipe.Recipe`, a new object here, never into the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from elasticnet.checkpoint import load_checkpoint
from elasticnet.config import RunConfig, eval_batch_size, resolve_for_device
from elasticnet.data import augment
from elasticnet.data.build import augmentation_kind
from elasticnet.data.dataset import PatchDataset
from elasticnet.data.device_batches import DeviceBatches
from elasticnet.errors import UserError
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.run_files import STATE_NAME
from elasticnet.training import distributed
from elasticnet.training.evaluate import calibration_batches, evaluate_calibrated, evaluation_setup
from elasticnet.training.hard_negatives import HardNegativeMiner
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.order import EpochSampler
from elasticnet.training.precision import Precision, amp_note
from elasticnet.training.recipe import Recipe
from elasticnet.training.schedule import build_optimizer, cosine_with_warmup
from elasticnet.training.state import TrainingState


@dataclass
class Training:
    """The objects of one run, as built by :func:`build_training`."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    dist: distributed.Dist
    model: ElasticUNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    precision: Precision
    freezer: InactiveWeightFreezer | None
    recipe: Recipe
    order: EpochSampler  # the data order: a function of (seed, epoch, position), so resume repeats it
    train_loader: DataLoader | DeviceBatches
    calib_loader: DataLoader
    val_loader: DataLoader
    test_loader: DataLoader | None
    calib_batches: int  # for the final table: as many images as calib_batches training batches
    quick_batches: int  # for the per-epoch look at the extremes: those of at most 4 training batches
    batch_size: int  # per process
    steps_per_epoch: int
    total_steps: int
    epochs: int
    memory_format: torch.memory_format
    state: TrainingState
    miner: HardNegativeMiner | None = None  # patch training with patch_hard_fraction > 0
    left_out: tuple[str, ...] = ()  # images of the data set in no part (their lesion is not located)

    @property
    def state_path(self) -> Path:
        return self.run_dir / STATE_NAME

    @property
    def epoch_end_step(self) -> int:
        """The step at which the current epoch ends (the last epoch may be cut short by ``max_steps``)."""
        return min((len(self.state.log) + 1) * self.steps_per_epoch, self.total_steps)

    def describe(self) -> str:
        """The line a run starts with: where, on what, how."""
        cfg = self.cfg
        left = (
            f" ({len(self.left_out)} left out, lesion not located: {', '.join(self.left_out)})" if self.left_out else ""
        )
        return (
            f"run folder {self.run_dir} | device {self.device}"
            f"{f' x {self.dist.world} processes' if self.dist.enabled else ''} | "
            f"precision {amp_note(cfg.train.amp, self.precision.used, self.device)} | "
            f"{len(self.train_loader.dataset)} train / {len(self.val_loader.dataset)} val images "
            f"at {cfg.data.image_size[0]}x{cfg.data.image_size[1]}"
            f"{left} | {self.total_steps} steps | "
            f"strategy {cfg.train.strategy}{' + distill' if cfg.train.distill else ''} | "
            f"sub-nets {len(self.recipe.sampler.choices)}"
        )

    def quick_look(self, pool: Callable[[], None] | None) -> dict[SubNet, float]:
        """Validation Dice of the largest and the smallest sub-net (once when they coincide), BN re-estimated
        on a few batches: the shared statistics mix all sub-nets and say little about any one."""
        sampler = self.recipe.sampler
        return {
            s: evaluate_calibrated(
                self.model,
                s,
                self.calib_loader,
                self.val_loader,
                self.device,
                self.quick_batches,
                self.cfg.train.threshold,
                self.cfg.data.tile,
                pool,
            ).dice
            for s in dict.fromkeys((sampler.largest, sampler.smallest))
        }


def build_training(cfg: RunConfig, split, run_dir: Path, device: torch.device, dist: distributed.Dist) -> Training:
    """The objects of a run on ``split``; restored from ``run_dir``'s saved state if it has one."""
    t = cfg.train
    model, memory_format = build_model(cfg, device, dist)
    order = EpochSampler(len(split.train), t.seed, dist.rank, dist.world)
    batch_size, steps_per_epoch, total_steps = step_counts(cfg, order.per_process())
    train_loader = training_batches(cfg, split.train, order, batch_size, device)
    calib_loader, val_loader, test_loader, calib_batches = evaluation_setup(split, cfg, batch_size, dist)

    optimizer, scheduler = build_schedule(cfg, model, steps_per_epoch, total_steps)
    recipe = Recipe(cfg, model, total_steps, cfg.data.tile or tuple(cfg.data.image_size))  # a patch or the image
    miner = None
    if cfg.data.patch_hard_fraction > 0 and isinstance(split.train, PatchDataset):
        miner = HardNegativeMiner(split.train, recipe.sampler.largest, t.threshold, eval_batch_size(cfg))
    return Training(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        dist=dist,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        precision=Precision.for_device(t.amp, device),
        freezer=InactiveWeightFreezer(model, optimizer) if t.inactive_weights == "freeze" else None,
        recipe=recipe,
        order=order,
        train_loader=train_loader,
        calib_loader=calib_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        calib_batches=calib_batches,
        quick_batches=calibration_batches(min(4, t.calib_batches), batch_size, eval_batch_size(cfg)),
        batch_size=batch_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        epochs=math.ceil(total_steps / steps_per_epoch),
        memory_format=memory_format,
        state=TrainingState(world=dist.world, steps_per_epoch=steps_per_epoch, batch_size=batch_size),
        miner=miner,
        left_out=split.left_out,
    )


def step_counts(cfg: RunConfig, images_per_process: int) -> tuple[int, int, int]:
    """(batch size, optimiser steps per epoch, total steps) of a run whose process sees that many images an
    epoch: whole batches only, ``max_steps`` a cap."""
    t = cfg.train
    batch_size = min(t.batch_size, images_per_process)
    steps_per_epoch = images_per_process // batch_size
    return batch_size, steps_per_epoch, min(t.epochs * steps_per_epoch, t.max_steps or t.epochs * steps_per_epoch)


def training_batches(
    cfg: RunConfig, train: Dataset, order: EpochSampler, batch_size: int, device: torch.device
) -> DataLoader | DeviceBatches:
    """The training batches in ``order``: augmented per batch on ``device`` (``augment_on: device``), or per
    image in a loader, with pinned host memory on GPUs so that a batch's copy overlaps the previous step."""
    if cfg.data.augment_on == "device":
        kind = augmentation_kind(cfg.data, cfg.model.in_channels)
        return DeviceBatches(train, order, batch_size, device, augment.spec(kind, cfg.data.augment_strength))
    return DataLoader(
        train,
        batch_size=batch_size,
        sampler=order,
        drop_last=True,
        num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda",
    )


def build_model(
    cfg: RunConfig, device: torch.device, dist: distributed.Dist
) -> tuple[ElasticUNet, torch.memory_format]:
    """The elastic model on ``device`` in the run's memory layout (sync-BN in data-parallel runs if asked)."""
    t = cfg.train
    model = ElasticUNet(cfg.model).to(device)
    model.grad_checkpoint = t.grad_checkpoint
    model.deterministic = t.deterministic
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    distributed.set_sync_bn(model, t.sync_bn and dist.enabled)
    return model, memory_format


def build_schedule(
    cfg: RunConfig, model: ElasticUNet, steps_per_epoch: int, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser and the cosine schedule with warm-up (one epoch, or 1/20 of a shorter run)."""
    t = cfg.train
    optimizer = build_optimizer(t.optimizer, model.parameters(), t.lr, t.weight_decay)
    warmup = min(steps_per_epoch, max(1, total_steps // 20))
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(total_steps, warmup, t.lr_floor))


# what `train --resume` may set anew: the device, the run folder, and where the data lie (the same images and
# split, which split.csv checks)
RESUME_MAY_CHANGE = {("train", "device"), ("train", "out"), ("data", "data")}


def check_same_config(saved: RunConfig, current: RunConfig, run_dir: Path) -> None:
    """Refuse to continue a training state with another config than it was trained with (an edited
    config.yaml): the weights would not fit another model, and another recipe would silently change the run."""
    before, now = saved.to_dict(), current.to_dict()
    changed = [
        f"{section}.{key} ({before[section].get(key)!r} -> {value!r})"
        for section, values in now.items()
        for key, value in values.items()
        if (section, key) not in RESUME_MAY_CHANGE and before.get(section, {}).get(key) != value
    ]
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise UserError(
            f"{run_dir}/config.yaml differs from the config its saved training state was trained with: {shown}. "
            "Put config.yaml back as the run wrote it, or start a new run with the new settings"
        )


def restore(training: Training) -> str | None:
    """Load the run's saved state, if any; returns the line that says where it resumes (None: a new run)."""
    tr, state = training, training.state
    if not tr.state_path.exists():
        return None
    saved = load_checkpoint(tr.state_path)
    # resolved as the current config was (a state saved by an older version may hold 'auto' where it now holds
    # the value used)
    trained = resolve_for_device(RunConfig.from_saved(saved["config"], str(tr.state_path)), tr.device.type)
    check_same_config(trained, tr.cfg, tr.run_dir)
    state.restore(saved, tr.model, tr.optimizer, tr.scheduler, tr.precision.scaler, tr.recipe.teacher, tr.miner)
    note = state.adapt(tr.dist.world, tr.steps_per_epoch, tr.batch_size, tr.scheduler)
    return f"resuming {tr.run_dir} at step {state.step}/{tr.total_steps} (epoch {len(state.log) + 1}){note}"
