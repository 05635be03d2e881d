"""Gradient projection between the largest sub-net and the others (NASViT, Gong et al. 2022).

A sandwich step sums the gradients of the largest sub-net and of the smaller ones. Where the two point in
opposite directions inside one weight tensor (negative inner product), the sum cancels progress of both.
The projection keeps one of them whole and removes from the other its component along the kept one
(PCGrad's rule, per weight tensor as in NASViT's ``misc/constrain_opt.py``):

- ``largest`` (NASViT): the largest's gradient is kept; the smaller sub-nets give up what opposes it.
- ``subnets``: the smaller sub-nets' summed gradient is kept; the largest gives up what opposes it (for
  recipes where the narrow sub-nets, all of whose weights are shared, are the ones that fall behind).

Where the two agree (inner product >= 0), or a tensor has only one of them, the plain sum is used. The cost is
one stored copy of the gradients per step; projection is invariant to a common scale (fp16 loss scaling).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

MODES = ("none", "largest", "subnets")


def project(kept: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``other`` without its component along ``kept`` when the two conflict (``<kept, other> < 0``). Computed
    without a branch on the device's numbers, so a GPU step is not synchronised once per weight tensor."""
    inner = torch.sum(kept.float() * other.float())
    norm = torch.sum(kept.float() * kept.float())
    coefficient = torch.where(inner < 0, inner / norm.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
    return other - coefficient.to(other.dtype) * kept


class GradientProjection:
    """Splits one step's backward passes into the largest's gradient and the others'.

    Call :meth:`after_largest` once the largest sub-net's backward is done (its gradients are set aside and
    the parameters' ``.grad`` cleared for the others), and :meth:`combine` after the last backward: the
    parameters' ``.grad`` then hold the combined gradient.
    """

    def __init__(self, mode: str, params: Iterable[torch.nn.Parameter]):
        if mode not in MODES:
            raise ValueError(f"gradient projection {mode!r}: one of {', '.join(MODES)}")
        self.mode = mode
        self.params = [p for p in params if p.requires_grad]
        self.largest: list[torch.Tensor | None] | None = None

    def after_largest(self) -> None:
        self.largest = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def combine(self) -> None:
        if self.largest is None:  # the largest did not run this step: nothing to project against
            return
        for p, big in zip(self.params, self.largest):
            small = p.grad
            if big is None:
                continue
            if small is None:
                p.grad = big
                continue
            if self.mode == "largest":
                p.grad = big + project(big, small)
            else:
                p.grad = small + project(small, big)
        self.largest = None
