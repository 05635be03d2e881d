"""Which sub-nets run at each training step, and how much each one's loss counts.

The draw depends only on ``(seed, step)``: it has no state of its own, never touches the RNGs that
shuffle data or drive augmentation, and is the same in every process of a distributed run. A resumed
run therefore draws exactly what the uninterrupted run would have drawn.

Rules (the weight-sharing literature's, see ``results/cvc_clinicdb/README.md`` for what they did here):

- ``uniform``: one sub-net per step, uniformly at random (the originating study's structural dropout).
- ``sandwich``: the largest, the smallest, every sub-net listed in ``always`` and ``num_random`` others drawn
  from the rest, uniformly or in proportion to their FLOPs (``random_by_flops``); their gradients are summed
  into one optimiser step.
- ``slimmable``: a sandwich that also runs every full-width depth each step (the slimmable rule: every depth a
  site deploys at full width trains every step), then ``always`` and the random ones.
- Loss weights: 1 for the largest and ``always``, ``weight_smallest`` and ``weight_random`` for the others;
  ``weights`` sets any sub-net's own (it overrides the rule's weight whenever that sub-net runs).
- Phases (fractions of the training steps): before ``shrink_start`` only the largest sub-net trains (a warm
  start); before ``width_start`` only full-width sub-nets are drawn (depth first, then widths); a sub-net
  kind that joins later has its loss weight ramped from 0 over ``ramp`` of the steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from elasticnet.errors import UserError
from elasticnet.models.subnet import SubNet
from elasticnet.training.schedule import ramp_factor, steps_of

STRATEGIES = ("uniform", "sandwich", "slimmable")


def parse_subnets(keys: list[str] | tuple[str, ...]) -> tuple[SubNet, ...]:
    """Sub-nets from their keys (``d4-w1``), with an error that shows the spelling."""
    out = []
    for key in keys:
        try:
            out.append(SubNet.from_key(str(key).strip()))
        except (ValueError, IndexError):
            raise UserError(f"cannot read sub-net {key!r}; write depth and width as d4-w1 or d3-w0.25") from None
    return tuple(out)


def parse_weights(items: list[str] | tuple[str, ...]) -> tuple[tuple[SubNet, float], ...]:
    """``("d4-w0.5=2", ...)`` -> ((SubNet(4, 0.5), 2.0), ...), with an error that shows the spelling."""
    out = []
    for item in items:
        key, sep, value = str(item).partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not np.isfinite(weight) or weight < 0:
            raise UserError(f"cannot read sub-net weight {item!r}; write d4-w0.5=2 (a sub-net, =, a weight >= 0)")
        out.append((parse_subnets([key])[0], weight))
    if len({s for s, _ in out}) != len(out):
        raise UserError(f"subnet_weights names a sub-net twice: {list(items)}")
    return tuple(out)


@dataclass(frozen=True)
class SubNetSampler:
    """Draws the sub-nets of one step from ``depths x widths``, with their loss weights."""

    depths: tuple[int, ...]
    widths: tuple[float, ...]
    strategy: str = "uniform"
    num_random: int = 1
    seed: int = 0
    always: tuple[SubNet, ...] = ()
    random_by_flops: bool = False
    weight_smallest: float = 1.0
    weight_random: float = 1.0
    total_steps: int = 0  # needed by the phases below (0: no phases)
    shrink_start: float = 0.0
    width_start: float = 0.0
    ramp: float = 0.0
    flops: dict[SubNet, float] = field(default_factory=dict, compare=False, hash=False)  # for random_by_flops
    weights: tuple[tuple[SubNet, float], ...] = ()  # a sub-net's own loss weight, over the rule's

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"unknown strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}")
        if self.num_random < 0:
            raise UserError(f"num_random must be >= 0, got {self.num_random}")
        for name, listed in (("always_subnets", self.always), ("subnet_weights", [s for s, _ in self.weights])):
            unknown = [s.key for s in listed if s not in self.choices]
            if unknown:
                raise UserError(
                    f"{name} {unknown} are not in the grid depths {list(self.depths)} x widths "
                    f"{[f'{w:g}' for w in self.widths]}"
                )
        for name, given in (("subnet_weights", self.weights), ("always_subnets", self.always)):
            if given and self.strategy == "uniform":
                raise UserError(f"{name} needs --strategy sandwich or slimmable (uniform runs one sub-net per step)")
        for name in ("shrink_start", "width_start", "ramp"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"{name} is a fraction of the training steps in [0, 1), got {getattr(self, name)}")
        if min(self.weight_smallest, self.weight_random) < 0:
            raise UserError("weight_smallest and weight_random must be >= 0")
        if self.random_by_flops and not self.flops:
            raise UserError("random_by_flops needs each sub-net's FLOPs (SubNetSampler.flops)")

    @property
    def choices(self) -> list[SubNet]:
        return [SubNet(d, w) for d in sorted(self.depths) for w in sorted(self.widths)]

    @property
    def largest(self) -> SubNet:
        return SubNet(max(self.depths), max(self.widths))

    @property
    def smallest(self) -> SubNet:
        return SubNet(min(self.depths), min(self.widths))

    @property
    def fixed(self) -> tuple[SubNet, ...]:
        """The sub-nets a sandwich step runs besides the largest and the smallest: for ``slimmable`` every
        full-width depth (deepest first), then ``always``."""
        full = (
            tuple(SubNet(d, max(self.widths)) for d in sorted(self.depths, reverse=True))
            if self.strategy == "slimmable"
            else ()
        )
        return tuple(dict.fromkeys(full + self.always))

    @property
    def trained(self) -> list[SubNet]:
        """The sub-nets the steps run: every choice, except in a sandwich without random draws
        (``num_random`` 0), which runs only the largest, the smallest and ``fixed``; the others then work
        only through the weights they share."""
        if self.strategy == "uniform" or self.num_random > 0:
            return self.choices
        return [s for s in self.choices if s in {self.largest, self.smallest, *self.fixed}]

    def _phase_step(self, fraction: float) -> int:
        return steps_of(fraction, self.total_steps)

    def _allowed(self, step: int) -> list[SubNet]:
        """The sub-nets that may run at ``step`` (the phases)."""
        if step < self._phase_step(self.shrink_start):
            return [self.largest]
        if step < self._phase_step(self.width_start):
            return [s for s in self.choices if s.width == max(self.widths)]
        return self.choices

    def sample(self, step: int) -> list[SubNet]:
        """The sub-nets of ``step``; the largest (the distillation teacher) comes first when it runs."""
        return [s for s, _ in self.sample_weighted(step)]

    def sample_weighted(self, step: int) -> list[tuple[SubNet, float]]:
        """``(sub-net, loss weight)`` pairs of ``step``."""
        rng = np.random.default_rng([self.seed, step])
        allowed = self._allowed(step)
        if self.strategy == "uniform":
            return [(allowed[rng.integers(len(allowed))], 1.0)]
        # allowed is a product set (everything, the full-width depths, or the largest alone)
        smallest = SubNet(min(s.depth for s in allowed), min(s.width for s in allowed))
        own = dict(self.weights)
        picked = [(self.largest, own.get(self.largest, 1.0))]
        for s in self.fixed:
            if s in allowed and s != self.largest:
                picked.append((s, self._ramped(own.get(s, 1.0), step, s)))
        if smallest not in (s for s, _ in picked):
            picked.append((smallest, self._ramped(own.get(smallest, self.weight_smallest), step, smallest)))
        taken = {s for s, _ in picked}
        middle = [s for s in allowed if s not in taken]
        if middle and self.num_random:
            p = None
            if self.random_by_flops:
                cost = np.array([self.flops[s] for s in middle], dtype=float)
                p = cost / cost.sum()
            chosen = rng.choice(len(middle), size=min(self.num_random, len(middle)), replace=False, p=p)
            picked += [
                (middle[i], self._ramped(own.get(middle[i], self.weight_random), step, middle[i])) for i in chosen
            ]
        return picked

    def _ramped(self, weight: float, step: int, subnet: SubNet) -> float:
        """``weight``, ramped in from 0 over ``ramp`` of the steps after the phase that let ``subnet`` join."""
        joined = self._phase_step(self.width_start if subnet.width != max(self.widths) else self.shrink_start)
        return weight * ramp_factor(step, joined, self._phase_step(self.ramp))
