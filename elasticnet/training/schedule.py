"""The optimiser and the schedules of a run: learning rate, and when distillation starts.

- Learning rate: linear warm-up, then a cosine decay to ``lr_floor`` x the peak (BigNAS's "constant ending":
  in a short run, or when small sub-nets are still learning while big ones have peaked, decaying to 0 stops
  them early).
- Optimiser: AdamW, or SGD with Nesterov momentum 0.9 (the optimiser of the slimmable/once-for-all
  reference recipes: summed sub-net gradients are not renormalised per coordinate, so each sub-net keeps its
  own progress when their gradients disagree).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the schedules are plain arithmetic; only build_optimizer needs torch
    import torch


def cosine_with_warmup(total_steps: int, warmup_steps: int, floor: float = 0.0) -> Callable[[int], float]:
    """The learning-rate factor of each step: ``(step+1)/warmup`` during warm-up, then cosine to ``floor``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    import torch

    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def steps_of(fraction: float, total_steps: int) -> int:
    """The step a fraction of the training reaches (phases and ramps are given as fractions)."""
    return round(fraction * total_steps)


def ramp_factor(step: int, first: int, ramp_steps: int) -> float:
    """From 0 to 1, linearly over ``ramp_steps`` steps after step ``first`` (the step something joins); 1 with no
    ramp, or for what trains from the start (nothing to ease in)."""
    if not ramp_steps or not first:
        return 1.0
    return min(1.0, (step - first + 1) / ramp_steps)


def distill_weight_at(step: int, total_steps: int, weight: float, start: float, ramp: float) -> float | None:
    """The distillation weight of ``step``: None before ``start`` (a fraction of the steps), then ramped
    linearly from 0 to ``weight`` over ``ramp`` of the steps."""
    first = steps_of(start, total_steps)
    if step < first:
        return None
    return weight * ramp_factor(step, first, steps_of(ramp, total_steps))
