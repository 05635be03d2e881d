"""Argument types shared by the commands: numbers with a range, refused by argparse with a clear message."""

from __future__ import annotations

import argparse
import math


def at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def at_least_number(low: float, inclusive: bool = True):
    """An argparse type: a finite number >= ``low`` (``inclusive``) or > ``low`` (budgets, allowed losses)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be a number {'>=' if inclusive else '>'} {low:g}, got {text}")
        return value

    parse.__name__ = f"number {'>=' if inclusive else '>'} {low:g}"
    return parse


def hxw(text: str) -> tuple[int, int]:
    """An argparse type: an image size ``HxW`` (or ``H,W``) of positive whole numbers, e.g. 288x384."""
    try:
        size = tuple(int(v) for v in str(text).lower().replace(",", "x").split("x"))
    except ValueError:
        size = ()
    if len(size) != 2 or min(size) <= 0:
        raise argparse.ArgumentTypeError(f"must be HxW in pixels, e.g. 288x384; got {text!r}")
    return size  # type: ignore[return-value]


hxw.__name__ = "HxW size"


def number_list(kind: type, example: str):
    """An argparse type: distinct positive numbers of ``kind`` (int or float) separated by commas (``--epochs
    64,128``, ``--lr 0.001,0.002``); anything else is one clear message naming the form."""

    def parse(text: str) -> list:
        try:
            values = [kind(s) for s in text.split(",") if s.strip()]
        except ValueError:
            values = []
        if not values or not all(0 < v < math.inf for v in values) or len(set(values)) < len(values):
            raise argparse.ArgumentTypeError(
                f"{text!r}: give distinct positive numbers separated by commas, e.g. {example}"
            )
        return values

    return parse
