"""The per-sub-net table of a run: its columns, and the files it is written to (subnets.csv, subnets.md).

Torch-free: ``elasticnet info`` shows a checkpoint's table with these columns without the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from elasticnet.config import RunConfig
from elasticnet.reporting import markdown_table, write_csv
from elasticnet.run_files import TABLE_MD_NAME, TABLE_NAME

TABLE_COLUMNS = [
    "depth",
    "width",
    "channels",
    "params",
    "mflops",
    "dice",
    "iou",
    "dice_bn_as_trained",
    "dice_lesion",
    "fp_area",
    "sensitivity_at_1fp",
    "fp_rate_normal",
    "test_dice",
    "test_iou",
    "test_dice_bn_as_trained",
    "test_iou_bn_as_trained",
    "test_dice_lesion",
    "test_fp_area",
    "test_sensitivity_at_1fp",
    "test_fp_rate_normal",
]


def table_columns(rows: Sequence[dict]) -> list[str]:
    """The columns of the sub-net table worth showing: those present in ``rows``."""
    return [c for c in TABLE_COLUMNS if rows and c in rows[0]]


def write_table(run_dir: Path, cfg: RunConfig, rows: list[dict]) -> None:
    """The sub-net table of a run: subnets.csv and subnets.md."""
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
        + markdown_table(rows, table_columns(rows))
    )
