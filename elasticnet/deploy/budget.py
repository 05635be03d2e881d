"""Pick the most accurate sub-net that fits a site's budget.

Budgets: ``ms`` (median batch-1 latency measured on this machine), ``mflops`` (at the input size),
``params`` and ``mb`` (peak memory measured on this machine). Among the sub-nets within every given
budget the one with the highest stored validation Dice wins (ties: the cheaper one). The explanation
names the winner, why, and what the next more accurate sub-net would have cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from elasticnet.errors import UserError

BUDGETS = {
    "ms": ("latency_ms", "ms"),
    "mflops": ("mflops", "MFLOPs"),
    "params": ("params", "params"),
    "mb": ("peak_mb", "MB"),
}
MEASURED = {"ms", "mb"}  # budgets that need the sub-nets profiled on this machine


@dataclass
class Choice:
    row: dict
    better: dict | None  # the cheapest sub-net more accurate than ``row`` (over budget), if any
    message: str


def _cost(row: dict, budgets: dict[str, float]) -> str:
    return ", ".join(f"{row[BUDGETS[k][0]]:g} {BUDGETS[k][1]}" for k in budgets)


def _name(row: dict) -> str:
    return f"depth {row['depth']} width {row['width']:g}"


def choose(rows: Sequence[dict], budgets: dict[str, float]) -> Choice:
    """The most accurate row within ``budgets`` ({'ms': 50, ...}); UserError if none fits."""
    unknown = sorted(set(budgets) - set(BUDGETS))
    if unknown or not budgets:
        raise UserError(f"budgets must be among {', '.join('--budget-' + k for k in BUDGETS)}, got {unknown or 'none'}")
    if any(math.isnan(r["dice"]) for r in rows):
        raise UserError(
            "the checkpoint holds no validation Dice for every sub-net, so there is nothing to choose by; "
            "pick one with --depth/--width"
        )
    primary = BUDGETS[next(iter(budgets))][0]
    fits = [r for r in rows if all(r[BUDGETS[k][0]] <= v for k, v in budgets.items())]
    limits = ", ".join(f"{v:g} {BUDGETS[k][1]}" for k, v in budgets.items())
    if not fits:
        cheapest = min(rows, key=lambda r: r[primary])
        raise UserError(
            f"no sub-net fits the budget ({limits}); the cheapest, {_name(cheapest)}, needs "
            f"{_cost(cheapest, budgets)}. Raise the budget or use a faster machine"
        )
    best = max(fits, key=lambda r: (r["dice"], -r[primary]))
    more_accurate = [r for r in rows if r["dice"] > best["dice"]]
    better = min(more_accurate, key=lambda r: r[primary]) if more_accurate else None
    message = (
        f"chose {_name(best)}: validation Dice {best['dice']:.4f}, the highest of the {len(fits)} of "
        f"{len(rows)} sub-nets within the budget ({limits}); it needs {_cost(best, budgets)}. "
    )
    if better is None:
        message += "No sub-net is more accurate."
    else:
        message += (
            f"The next more accurate one, {_name(better)} (Dice {better['dice']:.4f}), would need "
            f"{_cost(better, budgets)}."
        )
    return Choice(best, better, message)
