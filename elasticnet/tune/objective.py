"""What a trial is worth: the validation Dice of the chosen sub-net(s), and optionally its FLOPs.

``smallest``/``largest``: the BN-calibrated validation Dice of that sub-net from the run's final table;
``mean``: the mean over every sub-net. With ``multi``, the study also minimises the MFLOPs of the same
sub-net(s) (so the search may trade accuracy for cost through e.g. ``base_width``). Intermediate values
for pruning come from the per-epoch log (quick validation of the largest and smallest sub-nets).
"""

from __future__ import annotations

from collections.abc import Sequence

from elasticnet.errors import UserError
from elasticnet.subnet_row import SubnetRow

OBJECTIVES = ("smallest", "mean", "largest")


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective {name!r}; use one of {', '.join(OBJECTIVES)}")
    return name


def final_values(rows: Sequence[SubnetRow], objective: str, multi: bool) -> list[float]:
    """[Dice] or [Dice, MFLOPs] from a run's sub-net table (rows smallest first)."""
    chosen = {"smallest": rows[:1], "largest": rows[-1:], "mean": list(rows)}[objective]
    dice = sum(r.dice for r in chosen) / len(chosen)
    if not multi:
        return [dice]
    return [dice, sum(r.mflops for r in chosen) / len(chosen)]


def intermediate_value(log_row: dict, objective: str) -> float:
    """The per-epoch value reported for pruning."""
    if objective == "smallest":
        return float(log_row["val_dice_smallest"])
    if objective == "largest":
        return float(log_row["val_dice_largest"])
    return (float(log_row["val_dice_smallest"]) + float(log_row["val_dice_largest"])) / 2
