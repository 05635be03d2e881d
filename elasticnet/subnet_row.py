"""One row of a run's per-sub-net table: one definition of its columns, their order, rounding and parsing.

The table lives in three places (``subnets.csv``/``subnets.md`` of a run, the checkpoint's ``"subnets"`` list,
and the metrics a bundle's ``model.json`` copies from it); every reader goes through :class:`SubnetRow`, so a
column is named, rounded and parsed once. Torch-free: ``elasticnet info``, the paper scripts and the site
side read tables without the training code.

Columns absent from a run (lesion metrics without lesion-free images, detection without
``lesion_detection``, test columns without a test part) are ``None`` and left out of the files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from elasticnet.errors import UserError


def column(digits: int | None = None, shown: bool = True, name: str = "", optional: bool = False) -> Any:
    """A table column: rounded to ``digits`` when written, ``shown`` in the terminal/Markdown tables,
    written as ``name`` (default: the field name), ``optional`` (None when the run did not measure it)."""
    meta = {"digits": digits, "shown": shown, "name": name}
    return field(default=None, metadata=meta) if optional else field(metadata=meta)


@dataclass(frozen=True, kw_only=True)
class SubnetRow:
    """The evaluation of one sub-net (validation part; ``test_*`` on the test part), BN re-estimated."""

    depth: int = column()
    width: float = column()
    channels: str = column()  # "16-32-64"
    params: int = column()
    mflops: float = column(1)  # at the training image size
    dice: float = column(4)  # per-image mean at the run's threshold
    iou: float = column(4)
    dice_bn_as_trained: float = column(4)  # with the model's own (not re-estimated) BN statistics
    dice_lesion: float | None = column(4, optional=True)  # mean over images with a lesion
    fp_area: float | None = column(5, optional=True)  # predicted area share on images without one
    # lesion-level detection: share of lesions found at <= 0.5 / 1 / 2 false positives per film; share of
    # films without a lesion that show a false positive
    sens_05: float | None = column(4, False, "sensitivity_at_0.5fp", True)
    sens_1: float | None = column(4, True, "sensitivity_at_1fp", True)
    sens_2: float | None = column(4, False, "sensitivity_at_2fp", True)
    fp_rate: float | None = column(4, True, "fp_rate_normal", True)
    test_dice: float | None = column(4, optional=True)
    test_iou: float | None = column(4, optional=True)
    test_dice_bn_as_trained: float | None = column(4, optional=True)
    test_iou_bn_as_trained: float | None = column(4, optional=True)
    test_dice_lesion: float | None = column(4, optional=True)
    test_fp_area: float | None = column(5, optional=True)
    # lesion-level detection: share of lesions found at <= 0.5 / 1 / 2 false positives per film; share of
    # films without a lesion that show a false positive
    test_sens_05: float | None = column(4, False, "test_sensitivity_at_0.5fp", True)
    test_sens_1: float | None = column(4, True, "test_sensitivity_at_1fp", True)
    test_sens_2: float | None = column(4, False, "test_sensitivity_at_2fp", True)
    test_fp_rate: float | None = column(4, True, "test_fp_rate_normal", True)
    test_images: int | None = column(shown=False, optional=True)
    calib_batches: int = column(shown=False)  # training batches the BN statistics were re-estimated on
    val_images: int = column(shown=False)

    @property
    def key(self) -> str:
        """The sub-net's key, as :class:`elasticnet.models.SubNet` writes it (``d4-w0.5``)."""
        return f"d{self.depth}-w{self.width:g}"

    def to_dict(self) -> dict[str, Any]:
        """Column name -> value (rounded), in table order; columns the run did not measure left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            digits = f.metadata["digits"]
            out[f.metadata["name"] or f.name] = round(value, digits) if digits is not None else value
        return out

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], source: str = "the sub-net table") -> SubnetRow:
        """A row from a checkpoint's list or a CSV reader (strings parsed); unknown columns are ignored,
        so tables written by later versions still read."""
        values = {}
        for f in fields(cls):
            name = f.metadata["name"] or f.name
            raw = row.get(name)
            if raw is None or raw == "":
                if f.default is None:
                    continue
                raise UserError(f"{source} has a row without the column {name!r}; re-run `elasticnet eval`")
            values[f.name] = _parse(raw, _kind(f.type), name, source)
        return cls(**values)

    @staticmethod
    def shown_columns(rows: Sequence[SubnetRow]) -> list[str]:
        """The columns worth showing in a terminal or Markdown table: the shown ones present in ``rows``."""
        present = set(rows[0].to_dict()) if rows else set()
        names = [(f.metadata["name"] or f.name) for f in fields(SubnetRow) if f.metadata["shown"]]
        return [n for n in names if n in present]


def _kind(annotation: str) -> type:
    return int if annotation.startswith("int") else float if annotation.startswith("float") else str


def _parse(raw: Any, kind: type, name: str, source: str) -> Any:
    try:
        value = kind(float(raw)) if kind is int else kind(raw)
    except (TypeError, ValueError):
        raise UserError(f"{source}: column {name!r} holds {str(raw)[:40]!r}, not a {kind.__name__}") from None
    if kind is int and float(raw) != value:
        raise UserError(f"{source}: column {name!r} holds {raw!r}, not a whole number")
    return value


def rows_from(records: Iterable[Mapping[str, Any]], source: str = "the sub-net table") -> list[SubnetRow]:
    return [SubnetRow.from_dict(r, source) for r in records]


def read_table(path: Path) -> list[SubnetRow]:
    """A run's ``subnets.csv``."""
    with open(path, newline="") as f:
        return rows_from(csv.DictReader(f), str(path))


def find_row(rows: Iterable[SubnetRow], depth: int, width: float) -> SubnetRow | None:
    """The row of sub-net (depth, width), if the table has one."""
    return next((r for r in rows if r.depth == depth and math.isclose(r.width, width)), None)


def as_dicts(rows: Iterable[SubnetRow]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in rows]
