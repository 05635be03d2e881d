"""A plain, static U-Net built from a per-level channel list.

The same class is the individually trained baseline and the sub-model exported from an elastic U-Net
(:func:`elasticnet.models.surgery`), so an exported model needs none of the elastic code.

Architecture (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation"): each level is a double 3x3 conv + BatchNorm + ReLU; 2x2 max-pool between levels;
bilinear 2x up-sampling, concatenation ``[skip, up]`` and a double conv on the way up; a 1x1 head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from elasticnet.errors import UserError
from elasticnet.shapes import check_size


@dataclass
class UNetConfig:
    """Everything needed to rebuild a :class:`UNet` (stored beside its weights)."""

    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    in_channels: int = 3
    num_classes: int = 1

    @property
    def depth(self) -> int:
        return len(self.channels)

    def to_dict(self) -> dict:
        return asdict(self)


class DoubleConv(nn.Module):
    """(3x3 conv -> BatchNorm -> ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


def check_input_size(x: torch.Tensor, depth: int, in_channels: int) -> None:
    """Raise a clear error unless ``x`` is (N, in_channels, H, W) with H, W divisible by 2**(depth-1)."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise UserError(
            f"expected a batch of shape (N, {in_channels}, H, W), got {tuple(x.shape)}; "
            f"convert images to {in_channels} channel(s) and add a batch dimension"
        )
    check_size(tuple(x.shape[-2:]), depth, "input size", "resize or pad it, e.g. to {}")


def upsample2x(x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
    """Bilinear 2x up-sampling (``align_corners=False``) of an NCHW tensor.

    ``deterministic``: the same function from slices and weighted sums, whose backward is deterministic on
    CUDA (``F.interpolate``'s accumulates with atomics, so two same-seed GPU runs drift apart). Equal to
    ``F.interpolate`` up to float rounding; used by deterministic training only (it is slower).
    """
    if not deterministic:
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return _upsample_axis(_upsample_axis(x, 2), 3)


def _upsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    # output 2i samples the input at i - 1/4, output 2i+1 at i + 1/4 (clamped at the borders)
    n = x.shape[dim]
    before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)
    after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)
    pair = torch.stack([0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after], dim + 1)
    shape = list(x.shape)
    shape[dim] = 2 * n
    return pair.reshape(shape)


class UNet(nn.Module):
    """Static U-Net with ``len(config.channels)`` resolution levels. Outputs logits (N, classes, H, W)."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        if len(config.channels) < 2:
            raise UserError(f"a U-Net needs at least 2 levels, got channels={config.channels}")
        self.config = config
        ch = config.channels
        self.encoder = nn.ModuleList(
            DoubleConv(config.in_channels if level == 0 else ch[level - 1], ch[level]) for level in range(len(ch))
        )
        # decoder[level] receives the skip of `level` and the up-sampled output of `level + 1`.
        self.decoder = nn.ModuleList(DoubleConv(ch[level] + ch[level + 1], ch[level]) for level in range(len(ch) - 1))
        self.head = nn.Conv2d(ch[0], config.num_classes, 1)

    @property
    def depth(self) -> int:
        return self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_tracing():
            check_input_size(x, self.depth, self.config.in_channels)
        skips = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for level in range(self.depth - 2, -1, -1):
            up = upsample2x(x)
            x = self.decoder[level](torch.cat([skips[level], up], dim=1))
        return self.head(x)
