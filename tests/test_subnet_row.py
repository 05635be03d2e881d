"""The sub-net table's row type: one definition of the columns a run writes and every reader parses."""

from __future__ import annotations

import math

import pytest

from elasticnet.errors import UserError
from elasticnet.reporting import write_csv
from elasticnet.subnet_row import SubnetRow, as_dicts, find_row, read_table, rows_from

CORE = dict(channels="8-16-32", params=1234, iou=0.61234567, dice_bn_as_trained=0.5, calib_batches=4, val_images=20)


def row(depth: int = 3, width: float = 1.0, dice: float = 0.71234567, **extra) -> SubnetRow:
    return SubnetRow(depth=depth, width=width, dice=dice, mflops=12.345678, **CORE, **extra)


def test_columns_are_rounded_ordered_and_unmeasured_ones_left_out():
    d = row().to_dict()
    core = ["depth", "width", "channels", "params", "mflops", "dice", "iou", "dice_bn_as_trained"]
    assert list(d) == [*core, "calib_batches", "val_images"]
    assert d["mflops"] == 12.3 and d["dice"] == 0.7123 and d["iou"] == 0.6123
    full = row(dice_lesion=0.2, fp_area=0.0123456, sens_05=0.1, sens_1=0.5, sens_2=0.6, fp_rate=0.25).to_dict()
    assert full["fp_area"] == 0.01235 and full["sensitivity_at_0.5fp"] == 0.1 and full["fp_rate_normal"] == 0.25
    assert SubnetRow.shown_columns([row(sens_1=0.5, fp_rate=0.1, test_dice=0.7, test_iou=0.5, test_images=9)]) == [
        "depth",
        "width",
        "channels",
        "params",
        "mflops",
        "dice",
        "iou",
        "dice_bn_as_trained",
        "sensitivity_at_1fp",
        "fp_rate_normal",
        "test_dice",
        "test_iou",
    ]


@pytest.mark.parametrize("extra", [{}, {"test_dice": 0.8, "test_iou": 0.7, "test_images": 11, "test_sens_1": 0.5}])
def test_a_row_survives_the_checkpoint_and_the_csv(tmp_path, extra):
    rows = [row(3, 0.5, **extra), row(4, 1.0, **extra)]
    stored = as_dicts(rows)
    assert rows_from(stored) == [SubnetRow.from_dict(r) for r in stored]
    assert as_dicts(rows_from(stored)) == stored  # from the checkpoint: unchanged
    write_csv(stored, tmp_path / "subnets.csv")
    again = read_table(tmp_path / "subnets.csv")  # from the CSV: strings parsed to the same values
    assert as_dicts(again) == stored
    assert isinstance(again[0].depth, int) and isinstance(again[0].width, float)
    assert find_row(again, 4, 1.0) == again[1] and find_row(again, 5, 1.0) is None
    assert again[0].key == "d3-w0.5"


def test_nan_metrics_are_kept():
    (r,) = rows_from(as_dicts([row(dice=float("nan"))]))
    assert math.isnan(r.dice)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("dice"), "without the column 'dice'"),
        (lambda d: d.update(depth="three"), "column 'depth' holds 'three'"),
        (lambda d: d.update(depth="3.5"), "not a whole number"),
        (lambda d: d.update(dice=[1]), "column 'dice'"),
    ],
)
def test_a_broken_row_is_one_clear_error(edit, message):
    d = row().to_dict()
    edit(d)
    with pytest.raises(UserError, match=message):
        SubnetRow.from_dict(d, "run/subnets.csv")


def test_columns_of_later_versions_are_ignored():
    assert SubnetRow.from_dict(row().to_dict() | {"new_metric": 1}) == rows_from([row().to_dict()])[0]
