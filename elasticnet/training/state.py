"""What a training run must remember to continue exactly where it stopped.

The weights, optimiser and scheduler are saved by their own ``state_dict``; :class:`TrainingState` holds
the rest: the step, the per-epoch log, the current epoch's losses and timing (so its log row comes out the
same), the training time so far, and the RNG states of Python, NumPy and torch (the training itself draws
from seeded generators of its own, see :mod:`elasticnet.training.order`, but user code and libraries may
use the global ones). Everything is stored as tensors and plain values, so ``weights_only`` loading works.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.subnet_row import SubnetRow, as_dicts


@dataclass
class TrainingState:
    step: int = 0
    log: list[dict] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    epoch_images: int = 0
    epoch_seconds: float = 0.0
    train_seconds: float = 0.0
    train_flops: float = 0.0  # model FLOPs of every pass run so far (elasticnet.training.compute)
    world: int = 1  # processes, steps per epoch and per-process batch the state was saved with
    steps_per_epoch: int = 0
    batch_size: int = 0

    def add_time(self, seconds: float) -> None:
        self.epoch_seconds += seconds
        self.train_seconds += seconds

    def end_epoch(self, epoch: int, dice_largest: float, dice_smallest: float, lr: float) -> dict:
        """Append the epoch's log row and start a new epoch; returns the row."""
        seconds = max(self.epoch_seconds, 1e-9)
        row = {
            "epoch": epoch,
            "step": self.step,
            "train_loss": round(sum(self.epoch_losses) / max(1, len(self.epoch_losses)), 5),
            "val_dice_largest": round(dice_largest, 4),
            "val_dice_smallest": round(dice_smallest, 4),
            "lr": round(lr, 7),
            "train_tflops": round(self.train_flops / 1e12, 4),  # cumulative
            "seconds": round(seconds, 4),
            "images_per_s": round(self.epoch_images / seconds, 2),
        }
        self.log.append(row)
        self.epoch_losses, self.epoch_images, self.epoch_seconds = [], 0, 0.0
        return row

    def payload(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        precision: Any = None,
        teacher: Any = None,
        miner: Any = None,
    ) -> dict[str, Any]:
        """The checkpoint entries (besides config and model) of this state; with fp16 also the loss
        scaler's state (an fp16 run resumed without it would restart the scale), with an EMA teacher or a
        hard-negative miner theirs."""
        scaler = getattr(precision, "scaler", None)
        return {
            "precision": getattr(precision, "name", "fp32"),
            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
            **({"ema_teacher": teacher.state_dict()} if teacher is not None else {}),
            **({"hard_negatives": miner.state_dict()} if miner is not None else {}),
            "train_flops": self.train_flops,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": self.step,
            "epoch": len(self.log),
            "log": self.log,
            "epoch_progress": {"losses": self.epoch_losses, "images": self.epoch_images, "seconds": self.epoch_seconds},
            "train_seconds": self.train_seconds,
            "layout": {"world": self.world, "steps_per_epoch": self.steps_per_epoch, "batch_size": self.batch_size},
            "rng": rng_states(),
        }

    def final_payload(
        self,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        precision: Any,
        rows: Sequence[SubnetRow],
        bn_stats: dict,
    ) -> dict[str, Any]:
        """The checkpoint entries (besides config and model) of the finished run: what ``eval``, ``export``,
        ``info`` and the paper scripts read (the sub-net table, calibrated BN statistics, time and compute)."""
        return {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": self.step,
            "epoch": len(self.log),
            "subnets": as_dicts(rows),
            "bn_stats": bn_stats,
            "log": self.log,
            "train_seconds": round(self.train_seconds, 4),
            "train_tflops": round(self.train_flops / 1e12, 4),
            "precision": getattr(precision, "name", "fp32"),
        }

    def restore(
        self,
        ckpt: dict[str, Any],
        model: ElasticUNet,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: Any = None,
        teacher: Any = None,
        miner: Any = None,
    ) -> None:
        """Load a checkpoint written from :meth:`payload` into this state and the training objects."""
        model.load_state_dict(ckpt["model"])  # copies into the parameters, on their device
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        if teacher is not None and "ema_teacher" in ckpt:
            teacher.load_state_dict(ckpt["ema_teacher"])
        if miner is not None and "hard_negatives" in ckpt:
            miner.load_state_dict(ckpt["hard_negatives"])
        self.train_flops = float(ckpt.get("train_flops", 0.0))
        self.step = int(ckpt["step"])
        self.log = list(ckpt["log"])
        progress = ckpt["epoch_progress"]
        self.epoch_losses = list(progress["losses"])
        self.epoch_images = int(progress["images"])
        self.epoch_seconds = float(progress["seconds"])
        self.train_seconds = float(ckpt["train_seconds"])
        layout = ckpt.get("layout", {})
        self.world = int(layout.get("world", self.world))
        self.steps_per_epoch = int(layout.get("steps_per_epoch", self.steps_per_epoch))
        self.batch_size = int(layout.get("batch_size", self.batch_size))
        set_rng_states(ckpt["rng"])

    def adapt(self, world: int, steps_per_epoch: int, batch_size: int, scheduler: Any) -> str:
        """Continue a state saved with another number of processes: the images already seen in the current
        epoch are kept, the step count is rescaled, the learning rate follows the new schedule. Not
        bit-exact (the global batch differs); returns a note for the log ('' when nothing changed)."""
        if (world, steps_per_epoch, batch_size) == (self.world, self.steps_per_epoch, self.batch_size):
            return ""
        done_epochs = len(self.log)
        seen = (self.step - done_epochs * self.steps_per_epoch) * self.batch_size * self.world
        old = (self.world, self.step)
        self.step = done_epochs * steps_per_epoch + min(steps_per_epoch, seen // (batch_size * world))
        self.world, self.steps_per_epoch, self.batch_size = world, steps_per_epoch, batch_size
        scheduler.last_epoch = self.step
        for group, base_lr, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(self.step)
        return (
            f"; saved by {old[0]} process(es) at step {old[1]}, continuing with {world} at step {self.step} "
            "(rescaled, not bit-exact)"
        )


def rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
