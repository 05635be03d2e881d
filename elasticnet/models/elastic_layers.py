"""Layers that run with a slice of their channels.

A sub-net uses the *first* channels of every layer, so a smaller sub-net is a true slice of the larger
weights and costs less compute (slicing was measured at 0-2 % over a natively built net; multiplying
dropped channels by a zero mask cost ~3x, see ``benchmarks/``).

The input of a layer may be a concatenation of groups (a decoder sees ``[skip, up]``); each group is then
sliced on its own. ``active_in`` gives the active channels of each input group.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ElasticConv2d(nn.Conv2d):
    """A conv whose forward uses the first ``active_out`` filters and the active part of each input group."""

    def __init__(self, in_groups: Sequence[int], out_channels: int, kernel_size: int, bias: bool = False):
        super().__init__(sum(in_groups), out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.in_groups = tuple(in_groups)
        # Derived, never state: (active_in, device) -> column index; (active_in, active_out) -> sliced weights.
        self._index_cache: dict[tuple, torch.Tensor] = {}
        self._slice_cache: dict[tuple, tuple] = {}

    def input_index(self, active_in: Sequence[int]) -> slice | torch.Tensor:
        """Columns of the weight that an input with ``active_in`` channels per group uses."""
        if len(active_in) != len(self.in_groups):
            raise ValueError(f"expected {len(self.in_groups)} input group(s), got {len(active_in)}")
        if len(active_in) == 1:
            return slice(0, active_in[0])
        key = (tuple(active_in), self.weight.device)
        index = self._index_cache.get(key)
        if index is None:
            idx, offset = [], 0
            for full, active in zip(self.in_groups, active_in):
                idx.append(torch.arange(offset, offset + active))
                offset += full
            index = self._index_cache[key] = torch.cat(idx).to(self.weight.device)
        return index

    def sliced(self, active_in: Sequence[int], active_out: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of the sub-layer. At full size these are the parameters themselves.

        Without autograd (evaluation) the contiguous slices are cached until the parameters change
        (in-place updates bump their version; loading or moving them changes their storage).
        """
        if tuple(active_in) == self.in_groups and active_out == self.out_channels:
            return self.weight, self.bias
        if torch.is_grad_enabled():
            return self._slice(active_in, active_out)
        stamp = tuple((p._version, p.data_ptr()) for p in (self.weight, self.bias) if p is not None)
        key = (tuple(active_in), active_out)
        hit = self._slice_cache.get(key)
        if hit is None or hit[0] != stamp:
            weight, bias = self._slice(active_in, active_out)
            hit = self._slice_cache[key] = (stamp, weight.contiguous(), bias)
        return hit[1], hit[2]

    def _slice(self, active_in: Sequence[int], active_out: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight = self.weight[:active_out]
        if len(active_in) == 1:
            weight = weight[:, : active_in[0]]
        else:  # one slice per input group, concatenated: slicing's backward is deterministic on CUDA,
            # index_select's (an atomic index_add) is not
            starts = [sum(self.in_groups[:g]) for g in range(len(active_in))]
            weight = torch.cat([weight[:, s : s + a] for s, a in zip(starts, active_in)], dim=1)
        bias = None if self.bias is None else self.bias[:active_out]
        return weight, bias

    def active_mask(self, active_in: Sequence[int], active_out: int) -> dict[str, torch.Tensor]:
        """Boolean masks of the parameter entries the sub-layer uses (same shapes as the parameters)."""
        mask = torch.zeros_like(self.weight, dtype=torch.bool)
        mask[:active_out][:, self.input_index(active_in)] = True
        masks = {"weight": mask}
        if self.bias is not None:
            bias = torch.zeros_like(self.bias, dtype=torch.bool)
            bias[:active_out] = True
            masks["bias"] = bias
        return masks

    def forward(self, x: torch.Tensor, active_in: Sequence[int], active_out: int) -> torch.Tensor:  # type: ignore[override]
        weight, bias = self.sliced(active_in, active_out)
        return F.conv2d(x, weight, bias, self.stride, self.padding)


class ElasticBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``x.shape[1]`` channels: affine parameters and running statistics are sliced.

    Updating the running statistics of a slice writes into the full buffers, so sub-nets that share this
    layer mix their statistics; re-estimate them per sub-net before evaluation
    (:func:`elasticnet.training.calibration.calibrate_bn`).

    With :attr:`sync` set (data-parallel training with ``--sync-bn``, in a process group) the batch
    statistics in training mode are taken over all processes. BN re-estimation (``momentum=None``, a
    cumulative average) stays local: each process may see a different number of batches, and the
    statistics are pooled afterwards.
    """

    sync: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if self.training and self.sync and self.momentum is not None:
            return self._sync_forward(x, c)
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(
            x,
            self.running_mean[:c],
            self.running_var[:c],
            self.weight[:c],
            self.bias[:c],
            self.training,
            factor,
            self.eps,
        )

    def _sync_forward(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """Batch norm with mean and variance over every process's batch (differentiable all-reduce)."""
        from torch.distributed.nn.functional import all_reduce

        # statistics in fp32 whatever the input's dtype: N*H*W overflows fp16 (inf count, zero mean and
        # variance, NaN running_var), and sums of squares lose bf16's few mantissa bits. torch.full, not
        # torch.tensor, so no blocking host-to-device copy per layer.
        xf = x.float()
        count = torch.full((1,), x.numel() / c, dtype=torch.float32, device=x.device)
        stats = all_reduce(torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count]))
        n = stats[2 * c]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean[:c].mul_(1 - factor).add_(factor * mean.detach())
            self.running_var[:c].mul_(1 - factor).add_(factor * var.detach() * (n / (n - 1)).clamp_max(1e6))
        scale = self.weight[:c].float() * torch.rsqrt(var + self.eps)
        out = xf * scale[None, :, None, None] + (self.bias[:c].float() - mean * scale)[None, :, None, None]
        return out.to(x.dtype)

    def active_mask(self, active: int) -> dict[str, torch.Tensor]:
        mask = torch.zeros(self.num_features, dtype=torch.bool, device=self.weight.device)
        mask[:active] = True
        return {"weight": mask, "bias": mask.clone()}


class ElasticDoubleConv(nn.Module):
    """Elastic twin of :class:`elasticnet.models.unet.DoubleConv`, with one BatchNorm per BN group.

    ``num_bn`` > 1 gives private BatchNorm layers (e.g. one per depth); ``bn_index`` picks one.
    """

    def __init__(self, in_groups: Sequence[int], out_channels: int, num_bn: int = 1):
        super().__init__()
        self.conv1 = ElasticConv2d(in_groups, out_channels, 3)
        self.bn1 = nn.ModuleList(ElasticBatchNorm2d(out_channels) for _ in range(num_bn))
        self.conv2 = ElasticConv2d([out_channels], out_channels, 3)
        self.bn2 = nn.ModuleList(ElasticBatchNorm2d(out_channels) for _ in range(num_bn))

    def forward(self, x: torch.Tensor, active_in: Sequence[int], active_out: int, bn_index: int = 0) -> torch.Tensor:
        x = F.relu(self.bn1[bn_index](self.conv1(x, active_in, active_out)), inplace=True)
        return F.relu(self.bn2[bn_index](self.conv2(x, [active_out], active_out)), inplace=True)

    def active_mask(self, active_in: Sequence[int], active_out: int, bn_index: int = 0) -> dict[str, torch.Tensor]:
        masks = {}
        parts = {
            "conv1": self.conv1.active_mask(active_in, active_out),
            "conv2": self.conv2.active_mask([active_out], active_out),
            f"bn1.{bn_index}": self.bn1[bn_index].active_mask(active_out),
            f"bn2.{bn_index}": self.bn2[bn_index].active_mask(active_out),
        }
        for prefix, part in parts.items():
            masks.update({f"{prefix}.{name}": m for name, m in part.items()})
        return masks
