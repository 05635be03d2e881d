"""Model surgery: cut a static :class:`UNet` out of an :class:`ElasticUNet`.

The sub-net's weights are copied (not shared), so the result is an ordinary module that needs none of the
elastic code and can be exported, quantised or fine-tuned on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from elasticnet.models.elastic_layers import ElasticBatchNorm2d, ElasticConv2d, ElasticDoubleConv
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.models.unet import DoubleConv, UNet, UNetConfig


def subnet_config(model: ElasticUNet, subnet: SubNet) -> UNetConfig:
    """The static architecture of ``subnet`` (its per-level channels)."""
    model.check_subnet(subnet)
    cfg = model.config
    return UNetConfig(channels=cfg.channels(subnet), in_channels=cfg.in_channels, num_classes=cfg.num_classes)


def _copy_conv(src: ElasticConv2d, dst: nn.Conv2d, active_in: tuple[int, ...], active_out: int) -> None:
    weight, bias = src.sliced(active_in, active_out)
    dst.weight.copy_(weight)
    if bias is not None:
        dst.bias.copy_(bias)


def _copy_bn(src: ElasticBatchNorm2d, dst: nn.BatchNorm2d) -> None:
    c = dst.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:c])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
    dst.momentum, dst.eps = src.momentum, src.eps


def static_name(name: str, depth: int) -> str:
    """The static U-Net's module for the elastic module ``name`` run by a depth-``depth`` sub-net: a private
    junction is its first decoder block, a private bottleneck its last encoder block."""
    if name.startswith("junctions."):
        return f"decoder.{depth - 2}"
    if name.startswith("bottlenecks."):
        return f"encoder.{depth - 1}"
    return name


@torch.no_grad()
def extract(model: ElasticUNet, subnet: SubNet) -> UNet:
    """A static U-Net whose output equals ``model(x, subnet)`` (in eval mode), with copied weights.

    The BatchNorm statistics are whatever ``model`` holds now: re-estimate them for ``subnet`` first
    (:func:`elasticnet.training.calibration.calibrate_bn`) when BN is shared across sub-nets.
    """
    static = UNet(subnet_config(model, subnet)).to(next(model.parameters()).device)
    bn_index = model.bn_index(subnet)
    for name, block, active_in, active_out in model.blocks(subnet):
        target = static.get_submodule(static_name(name, subnet.depth))
        if isinstance(block, ElasticDoubleConv):
            assert isinstance(target, DoubleConv)
            _copy_conv(block.conv1, target.conv1, active_in, active_out)
            _copy_bn(block.bn1[bn_index], target.bn1)
            _copy_conv(block.conv2, target.conv2, (active_out,), active_out)
            _copy_bn(block.bn2[bn_index], target.bn2)
        else:
            _copy_conv(block, target, active_in, active_out)
    return static.train(model.training)
