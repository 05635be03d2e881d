"""The order in which training images are seen: a function of (seed, epoch, position) only.

Resuming a run exactly needs the data order and every augmentation to be reproducible from a position
in the run, not from the state of an iterator that died with the process. :class:`EpochSampler` shuffles
with a generator seeded by (seed, epoch), can start in the middle of an epoch, and yields
``(index, sample_seed)`` keys; the data sets use ``sample_seed`` for that item's augmentation and crop.
So batch k of epoch e is the same tensor whether the run was interrupted before it or not, and whatever
``num_workers`` is.

``rank``/``world`` take every ``world``-th position of the shuffled order (for data-parallel training),
after dropping the last ``size % world`` positions so that every process takes the same number of steps;
with the default (0, 1) a process sees every image.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def mix(*values: int) -> int:
    """One 63-bit seed from several integers (NumPy's SeedSequence hashing; stable across versions)."""
    return int(
        np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1
    )


class EpochSampler(Sampler):
    """Shuffled ``(index, sample_seed)`` keys for one epoch; :meth:`set_epoch` picks the epoch and start."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1):
        if size < 1:
            raise ValueError("EpochSampler needs at least one item")
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this process's ``start``-th item (0: from the beginning)."""
        self.epoch, self.start = epoch, start

    def order(self, epoch: int) -> list[int]:
        """This process's image indices for ``epoch``, in order."""
        generator = torch.Generator().manual_seed(mix(self.seed, epoch))
        used = self.size - self.size % self.world
        return torch.randperm(self.size, generator=generator)[:used][self.rank :: self.world].tolist()

    def per_process(self) -> int:
        return self.size // self.world

    def __len__(self) -> int:
        return self.per_process() - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = self.order(self.epoch)
        for position in range(self.start, len(order)):
            yield order[position], mix(self.seed, self.epoch, self.rank, position)
