"""Re-evaluating a finished run with this version's evaluation (``elasticnet eval --recalibrate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from elasticnet.checkpoint import (
    load_checkpoint,
    model_from_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    saved_state,
)
from elasticnet.config import eval_batch_size
from elasticnet.errors import UserError
from elasticnet.run_files import SPLIT_NAME
from elasticnet.runtime import select_device
from elasticnet.subnet_row import as_dicts
from elasticnet.training.evaluate import evaluation_setup, subnet_table
from elasticnet.training.run_dir import run_lock, run_split
from elasticnet.training.tables import show, write_table


def recalibrate(path: str | Path, device: str = "auto", echo: Callable[[str], None] = print) -> Path:
    """Re-estimate every sub-net's BN statistics and rewrite the sub-net table of a finished run with this
    version's evaluation: subnets.csv, subnets.md, and the table and calibrated statistics in its checkpoint
    (what export uses). The weights are left as trained. For runs evaluated by an older elasticnet."""
    checkpoint = resolve_checkpoint(path)
    run_dir = checkpoint.parent
    if not (run_dir / SPLIT_NAME).is_file():
        raise UserError(
            f"--recalibrate rewrites the table of a run in its run folder, and {run_dir} holds no {SPLIT_NAME} (the "
            f"split the run was evaluated on): pass the run folder the checkpoint was trained in"
        )
    with run_lock(run_dir):
        ckpt = load_checkpoint(checkpoint)
        cfg, model = model_from_checkpoint(ckpt, select_device(device))
        t_cfg = cfg.train
        split = run_split(cfg, run_dir, "--recalibrate needs the images the run was trained and evaluated on")
        calib_loader, val_loader, test_loader, calib_batches = evaluation_setup(split, cfg, t_cfg.batch_size)
        echo(
            f"calibrating BatchNorm ({calib_batches} batches of {eval_batch_size(cfg)}) and evaluating "
            f"{len(cfg.model.subnets())} sub-nets of {run_dir} ..."
        )
        rows, bn_stats = subnet_table(
            model,
            calib_loader,
            val_loader,
            next(model.parameters()).device,
            tuple(cfg.data.image_size),
            calib_batches,
            t_cfg.threshold,
            test_loader,
            cfg.data.tile,
            detection=t_cfg.lesion_detection,
        )
        write_table(run_dir, cfg, rows)
        save_checkpoint(
            checkpoint, cfg, model.cpu(), **(saved_state(ckpt) | {"subnets": as_dicts(rows), "bn_stats": bn_stats})
        )
    echo(show(rows))
    return run_dir
