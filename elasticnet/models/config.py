"""The architecture config of an elastic U-Net (plain data: no torch needed to read or validate it)."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass
from typing import Literal

from elasticnet.errors import UserError
from elasticnet.models.subnet import SubNet, level_channels
from elasticnet.options import opt

# BatchNorm layers of the elastic model: one set shared by every sub-net; one per depth; one per width
# (switchable BN of slimmable networks: private statistics *and* affine parameters per width); one per sub-net.
BnMode = Literal["shared", "per_depth", "per_width", "per_subnet"]
BN_MODES: tuple[str, ...] = typing.get_args(BnMode)


@dataclass
class ElasticUNetConfig:
    """Architecture of an elastic U-Net. The largest sub-net has ``max(depths)`` levels at width 1.0."""

    base_width: int = opt(16, "channels of the first level of the largest sub-net (doubled per level)")
    depths: list[int] = opt(factory=lambda: [3, 4, 5], help="resolution levels of the sub-nets")
    widths: list[float] = opt(
        factory=lambda: [0.25, 0.5, 0.75, 1.0], help="channel fractions of the sub-nets (must include 1)"
    )
    in_channels: int = opt(3, "image channels (3: RGB, 1: grey)")
    num_classes: int = opt(1, "output channels (1: lesion vs background)")
    channel_multiple: int = opt(
        4, "channels of a width < 1 are rounded to a multiple of this; 0: the training device's fast multiple"
    )
    junction: Literal["shared", "private"] = opt(
        "private",
        "the decoder block that takes a depth's bottleneck: shared by the depths that reach it, or private to "
        "each depth (the exported sub-net is the same plain U-Net either way)",
    )
    bottleneck: Literal["shared", "private"] = opt(
        "shared",
        "the encoder block that is a depth's bottleneck: shared with the deeper depths (an inner encoder level "
        "there), or private to each depth but the largest (the exported sub-net is the same plain U-Net)",
    )
    bn_mode: BnMode = opt(
        "shared",
        "BatchNorm: shared by all sub-nets, or private (statistics and affine) per depth, per width (switchable BN) or per sub-net",
    )

    def __post_init__(self) -> None:
        self.depths = sorted({int(d) for d in self.depths})
        self.widths = sorted({float(w) for w in self.widths})
        if not self.depths or min(self.depths) < 2:
            raise UserError(f"depths must be integers >= 2 (number of resolution levels), got {self.depths}")
        if not self.widths or min(self.widths) <= 0 or max(self.widths) > 1:
            raise UserError(f"widths must lie in (0, 1], got {self.widths}")
        if max(self.widths) != 1.0:
            raise UserError(f"widths must include 1.0 (the full model), got {self.widths}")
        if self.bn_mode not in BN_MODES:
            raise UserError(f"bn_mode must be one of {BN_MODES}, got {self.bn_mode!r}")
        if self.channel_multiple < 0:
            raise UserError(
                f"channel_multiple must be >= 1, or 0 for the training device's fast multiple; got "
                f"{self.channel_multiple}"
            )
        if self.base_width < max(1, self.channel_multiple):
            raise UserError(f"base_width ({self.base_width}) must be >= channel_multiple ({self.channel_multiple})")

    def same_channel_widths(self) -> list[tuple[float, float]]:
        """Pairs of configured widths that the channel rounding makes identical (the same sub-nets twice)."""
        if not self.channel_multiple:
            return []
        shapes = {
            w: tuple(level_channels(self.base_width, self.max_depth, w, self.channel_multiple)) for w in self.widths
        }
        return [(a, b) for i, a in enumerate(self.widths) for b in self.widths[i + 1 :] if shapes[a] == shapes[b]]

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    @property
    def largest(self) -> SubNet:
        return SubNet(self.max_depth, 1.0)

    @property
    def smallest(self) -> SubNet:
        return SubNet(min(self.depths), min(self.widths))

    def subnets(self) -> list[SubNet]:
        """Every configured sub-net, smallest first."""
        return [SubNet(d, w) for d in self.depths for w in self.widths]

    def channels(self, subnet: SubNet) -> list[int]:
        return level_channels(self.base_width, subnet.depth, subnet.width, self.channel_multiple)

    def bn_count(self) -> int:
        """BatchNorm sets per layer under :attr:`bn_mode`."""
        return {
            "shared": 1,
            "per_depth": len(self.depths),
            "per_width": len(self.widths),
            "per_subnet": len(self.depths) * len(self.widths),
        }[self.bn_mode]

    def bn_index(self, subnet: SubNet) -> int:
        """Which BatchNorm set ``subnet`` runs with (see :attr:`bn_mode`)."""
        if self.bn_mode == "per_depth":
            return self.depths.index(subnet.depth)
        if self.bn_mode == "per_width":
            return self.widths.index(subnet.width)
        if self.bn_mode == "per_subnet":
            return self.subnets().index(subnet)
        return 0

    def to_dict(self) -> dict:
        return asdict(self)
