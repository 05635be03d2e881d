"""A sub-net of the elastic U-Net: one (depth, width) choice, and the channel rule behind it.

``depth`` is the number of resolution levels (a depth-d U-Net down-samples d-1 times and uses level d-1
as its bottleneck); ``width`` multiplies the channels of every level.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SubNet:
    """One (depth, width) choice. Hashable and ordered (by depth, then width)."""

    depth: int
    width: float = 1.0

    @property
    def key(self) -> str:
        """A stable text key, used in checkpoints and file names (``d4-w0.5``)."""
        return f"d{self.depth}-w{self.width:g}"

    @classmethod
    def from_key(cls, key: str) -> SubNet:
        d, w = key.split("-")
        return cls(int(d[1:]), float(w[1:]))

    def __str__(self) -> str:
        return f"depth {self.depth}, width {self.width:g}"


def round_channels(value: float, multiple: int) -> int:
    """Round ``value`` to the nearest multiple of ``multiple`` (at least one multiple)."""
    return max(multiple, round(value / multiple) * multiple)


def level_channels(base_width: int, depth: int, width: float = 1.0, multiple: int = 4) -> list[int]:
    """Channels of levels 0..depth-1: ``base_width * 2**level * width`` rounded to ``multiple``.

    At width 1.0 this is exactly ``base_width * 2**level`` (the full model); smaller widths never exceed it.
    """
    full = [base_width * 2**level for level in range(depth)]
    if width == 1.0:
        return full
    return [min(c, round_channels(c * width, multiple)) for c in full]
