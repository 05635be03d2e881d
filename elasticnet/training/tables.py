"""The per-sub-net table of a run (rows: :class:`elasticnet.subnet_row.SubnetRow`) on the terminal and in the
run's files (subnets.csv, subnets.md). Torch-free, like the row type."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from elasticnet.config import RunConfig
from elasticnet.reporting import markdown_table, text_table, write_csv
from elasticnet.run_files import TABLE_MD_NAME, TABLE_NAME
from elasticnet.subnet_row import SubnetRow, as_dicts


def show(rows: Sequence[SubnetRow]) -> str:
    """The table for the terminal: the shown columns the run measured."""
    return text_table(as_dicts(rows), SubnetRow.shown_columns(rows))


def write_table(run_dir: Path, cfg: RunConfig, table: Sequence[SubnetRow]) -> None:
    """The sub-net table of a run: subnets.csv and subnets.md."""
    rows = as_dicts(table)
    write_csv(rows, run_dir / TABLE_NAME)
    (run_dir / TABLE_MD_NAME).write_text(
        f"Validation ({rows[0]['val_images']} images"
        + (f"; test: {rows[0]['test_images']} images" if "test_images" in rows[0] else "")
        + f"), per-image mean Dice/IoU at threshold {cfg.train.threshold}; "
        f"BN re-estimated per sub-net on {rows[0]['calib_batches']} training batches "
        f"(`dice_bn_as_trained`: without). `dice_lesion`: mean over images with a lesion; `fp_area`: predicted "
        f"area fraction on images without one. MFLOPs at {cfg.data.image_size[0]}x{cfg.data.image_size[1]}."
        + (
            " `sensitivity_at_Kfp`: share of lesions detected (a predicted component centred inside the lesion) at "
            "<= K false positives per film (FROC); `fp_rate_normal`: share of films without a lesion that show a "
            "false positive."
            if "sensitivity_at_1fp" in rows[0]
            else ""
        )
        + "\n\n"
        + markdown_table(rows, SubnetRow.shown_columns(table))
    )
