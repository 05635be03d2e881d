"""Size and cost of a static U-Net: parameters and conv FLOPs at a given input size."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from elasticnet.models.unet import UNet, UNetConfig


def count_params(config: UNetConfig) -> int:
    with torch.device("meta"):
        model = UNet(config)
    return sum(p.numel() for p in model.parameters())


def count_flops(config: UNetConfig, image_size: tuple[int, int]) -> int:
    """FLOPs of one forward pass on one image (convolutions; a multiply-add counts as 2).

    Counted by PyTorch's FlopCounterMode on the meta device, so nothing is computed or allocated.
    BatchNorm, ReLU, pooling and interpolation (a few % of the total) are not counted.
    """
    with torch.device("meta"):
        model = UNet(config).eval()
        x = torch.empty(1, config.in_channels, *image_size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())
