"""Which sub-nets run at each training step.

The draw depends only on ``(seed, step)``: it has no state of its own, never touches the RNGs that
shuffle data or drive augmentation, and is the same in every process of a distributed run. A resumed
run therefore draws exactly what the uninterrupted run would have drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from elasticnet.errors import UserError
from elasticnet.models.subnet import SubNet

STRATEGIES = ("uniform", "sandwich")


@dataclass(frozen=True)
class SubNetSampler:
    """Draws the sub-nets of one step from ``depths x widths``.

    - ``uniform``: one sub-net, uniformly at random (the originating study's structural dropout).
    - ``sandwich``: the largest, the smallest and ``num_random`` random others; their gradients are
      accumulated into one optimiser step (Yu & Huang, 2019, "the sandwich rule").
    """

    depths: tuple[int, ...]
    widths: tuple[float, ...]
    strategy: str = "uniform"
    num_random: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.num_random < 0:
            raise UserError(f"num_random must be >= 0, got {self.num_random}")

    @property
    def choices(self) -> list[SubNet]:
        return [SubNet(d, w) for d in sorted(self.depths) for w in sorted(self.widths)]

    @property
    def largest(self) -> SubNet:
        return SubNet(max(self.depths), max(self.widths))

    @property
    def smallest(self) -> SubNet:
        return SubNet(min(self.depths), min(self.widths))

    def sample(self, step: int) -> list[SubNet]:
        """The sub-nets of ``step``; in ``sandwich`` order the largest comes first (the distillation teacher)."""
        rng = np.random.default_rng([self.seed, step])
        choices = self.choices
        if self.strategy == "uniform":
            return [choices[rng.integers(len(choices))]]
        picked = [self.largest]
        if self.smallest != self.largest:
            picked.append(self.smallest)
        middle = [s for s in choices if s not in (self.largest, self.smallest)]
        if middle and self.num_random:
            picked += [middle[i] for i in rng.choice(len(middle), size=min(self.num_random, len(middle)), replace=False)]
        return picked
