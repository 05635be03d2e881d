"""Argument types shared by the commands: numbers with a range, refused by argparse with a clear message."""

from __future__ import annotations

import argparse


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
