"""What a run writes as it goes: the training state (``last.pt``) during training, and at the end the
per-sub-net table, the checkpoint and the run's summary."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from elasticnet.checkpoint import save_checkpoint
from elasticnet.config import eval_batch_size
from elasticnet.reporting import plot_training_curve
from elasticnet.run_files import CHECKPOINT_NAME, CURVE_NAME
from elasticnet.subnet_row import SubnetRow
from elasticnet.training import distributed
from elasticnet.training.evaluate import subnet_table
from elasticnet.training.setup import Training
from elasticnet.training.step import NonFiniteLoss
from elasticnet.training.tables import show, write_table


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
    if tr.dist.main:
        save_checkpoint(
            tr.state_path,
            tr.cfg,
            tr.model,
            **tr.state.payload(tr.optimizer, tr.scheduler, tr.precision, tr.recipe.teacher, tr.miner),
        )


def bn_pool(tr: Training) -> Callable[[], None] | None:
    """After BN calibration in data-parallel training: average the statistics over the processes."""
    return (lambda: distributed.pool_bn_statistics(tr.model, tr.dist)) if tr.dist.enabled else None


def finish(tr: Training, echo: Callable[[str], None]) -> Path:
    """The per-sub-net table (unless ``--no-final-table``), the checkpoint, and the run's summary."""
    tr.model.to(memory_format=torch.contiguous_format)  # the checkpoint and the table use the plain layout
    rows, bn_stats = final_table(tr, echo) if tr.cfg.train.final_table else ([], {})
    if not tr.dist.main:
        return tr.run_dir
    plot_training_curve(tr.state.log, tr.run_dir / CURVE_NAME)
    if rows:
        write_table(tr.run_dir, tr.cfg, rows)
    payload = tr.state.final_payload(tr.optimizer, tr.scheduler, tr.precision, rows, bn_stats)
    save_checkpoint(tr.run_dir / CHECKPOINT_NAME, tr.cfg, tr.model, **payload)
    tr.state_path.unlink(missing_ok=True)  # checkpoint.pt supersedes it
    echo(summary(tr, rows))
    return tr.run_dir


def final_table(tr: Training, echo: Callable[[str], None]) -> tuple[list[SubnetRow], dict]:
    """Every sub-net calibrated and evaluated (validation and test parts): the table and the calibrated BN
    statistics that export uses."""
    cfg = tr.cfg
    echo(
        f"calibrating BatchNorm ({tr.calib_batches} batches of {eval_batch_size(cfg)}) and evaluating "
        f"{len(tr.recipe.sampler.choices)} sub-nets ..."
    )
    return subnet_table(
        tr.model,
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


def summary(tr: Training, rows: list[SubnetRow]) -> str:
    """What the run ends by telling the user: the table, the time, the files."""
    took = f"trained in {tr.state.train_seconds:.0f} s ({tr.precision.name})"
    if not rows:
        return (
            f"\n{took}; no sub-net table (--no-final-table): `elasticnet eval --checkpoint {tr.run_dir} --recalibrate` "
            f"makes it; wrote {tr.run_dir}/ (checkpoint.pt, config.yaml, log.csv, split.csv, curve.png)"
        )
    return (
        "\nper-sub-net validation results (mean over images of per-image Dice/IoU at threshold "
        f"{tr.cfg.train.threshold}, BN re-estimated per sub-net):\n{show(rows)}\n"
        f"\n{took}; wrote {tr.run_dir}/ (checkpoint.pt, config.yaml, log.csv, subnets.csv, subnets.md, split.csv, "
        "curve.png)"
    )
