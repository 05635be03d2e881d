"""Re-estimating BatchNorm statistics for one sub-net.

During elastic training the running statistics of shared BN layers mix every sub-net that ran, which
hurts the small ones most (measured on CVC-ClinicDB, sandwich training: mean test Dice over all sub-nets 22.6 %
with the as-trained statistics, 51.3 % re-estimated; results/cvc_clinicdb/cpu/bn_calibration.md). Before a
sub-net is evaluated or exported we therefore recompute its
statistics as a plain (cumulative) average over ``num_batches`` training batches, as Once-for-All and
slimmable networks do.

The calibration images must be spread over the whole training set (:func:`spread_order`): taken in file
order, 16 batches of CVC-ClinicDB are a handful of video sequences, and their statistics cost every
sub-net 1-4 test Dice points and a plain U-Net 2 (``paper/bn_calibration.py``, results/cvc_clinicdb/cpu).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet


def spread_order(n: int, seed: int) -> list[int]:
    """Indices 0..n-1 in a fixed seeded order, so that any first k of them are spread over the whole set
    (data sets are stored sequence by sequence or patient by patient)."""
    return np.random.default_rng(seed).permutation(n).tolist()


def inference_layout(images: torch.Tensor) -> torch.Tensor:
    """Images in the memory layout that runs inference fastest on their device.

    On CPUs, NHWC (channels_last) input makes oneDNN run the whole U-Net in its blocked layout: measured
    1.5x (full width) to 2.6x (narrow sub-nets) faster forward passes at 96x128 than NCHW, with outputs equal
    to 1e-7. GPUs keep the layout the model was trained in.
    """
    if images.device.type == "cpu" and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def _bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BatchNorm buffer (running mean/var, batch counter)."""
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}


def load_bn_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, value in state.items():
            buffers[name].copy_(value)


@contextmanager
def calibrated(
    model: ElasticUNet,
    subnet: SubNet,
    batches: Iterable[torch.Tensor],
    num_batches: int,
    pool: Callable[[], None] | None = None,
) -> Iterator[ElasticUNet]:
    """``model`` in eval mode with its BN statistics re-estimated for ``subnet`` (:func:`calibrate_bn`);
    its own statistics and mode are restored on leaving."""
    saved, was_training = bn_state(model), model.training
    try:
        calibrate_bn(model, subnet, batches, num_batches, pool)
        model.eval()
        yield model
    finally:
        load_bn_state(model, saved)
        model.train(was_training)


@torch.no_grad()
def calibrate_bn(
    model: ElasticUNet,
    subnet: SubNet,
    batches: Iterable[torch.Tensor],
    num_batches: int,
    pool: Callable[[], None] | None = None,
) -> int:
    """Reset and re-estimate the BN statistics of ``model`` for ``subnet`` on up to ``num_batches`` batches.

    Buffers of *all* BN layers are reset (those outside the sub-net are simply not re-filled), so save
    them with :func:`bn_state` first if the as-trained statistics are still needed. ``pool`` runs after
    the batches (data-parallel training: average the statistics over the processes). Returns the
    number of batches used.
    """
    layers = _bn_layers(model)
    momenta, syncs = [m.momentum for m in layers], [getattr(m, "sync", False) for m in layers]
    was_training = model.training
    device = next(model.parameters()).device
    for m in layers:
        m.reset_running_stats()
        if hasattr(m, "sync"):
            m.sync = False  # each process calibrates on its share; ``pool`` averages afterwards
    model.train()
    used = 0
    try:
        for images in batches:
            if used >= num_batches:
                break
            used += 1
            # a cumulative average over the batches: the k-th batch enters with weight 1/k. Set here rather
            # than with momentum None, which reads the batch counter back from the device in every layer
            # of every batch (a GPU synchronisation each time)
            for m in layers:
                m.momentum = 1.0 / used
            model(inference_layout(images.to(device)), subnet)
        if pool is not None:
            pool()
    finally:
        for m, momentum, sync in zip(layers, momenta, syncs):
            m.momentum = momentum
            if hasattr(m, "sync"):
                m.sync = sync
        model.train(was_training)
    return used
