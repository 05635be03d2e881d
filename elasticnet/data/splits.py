"""Train / validation / test splits: random (by image) or grouped (by video sequence or patient).

Both are seeded; ``k``-fold cross-validation uses the same unit (image or group), so every image is
tested exactly once over the folds. A grouped split never puts two images of one group in different
parts. The result is a list of part names, one per image, written to the run folder as ``split.csv``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from elasticnet.errors import UserError

METHODS = ("random", "grouped")


def _units(groups: Sequence[str], method: str) -> list[list[int]]:
    """The split units: lists of image indices that must stay together, in first-seen order."""
    if method == "random":
        return [[i] for i in range(len(groups))]
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[g].append(i)
    return list(members.values())


def _take(units: list[list[int]], order: Sequence[int], target: float) -> tuple[list[int], list[int]]:
    """Take units in ``order`` until at least ``target`` images are taken (at least one unit if target > 0)."""
    taken, rest, count = [], [], 0
    for u in order:
        if count < target:
            taken.append(u)
            count += len(units[u])
        else:
            rest.append(u)
    return taken, rest


def assign_split(
    groups: Sequence[str],
    method: str = "random",
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    seed: int = 0,
    folds: int = 0,
    fold: int = 0,
) -> list[str]:
    """'train' / 'val' / 'test' for each image.

    With ``folds`` >= 2 the test part is fold ``fold`` of ``folds`` (units dealt to folds in a seeded
    order, balancing image counts) and ``test_fraction`` is ignored; validation is then ``val_fraction``
    of the remaining images.
    """
    if method not in METHODS:
        raise UserError(f"unknown split {method!r}; use one of {', '.join(METHODS)}")
    units = _units(groups, method)
    n = len(groups)
    if folds == 1 or folds < 0:
        raise UserError(f"folds must be 0 (a single split) or >= 2, got {folds}")
    needed = 3 if (folds or test_fraction > 0) else 2
    if len(units) < needed:
        unit = "groups" if method == "grouped" else "images"
        raise UserError(
            f"a {method} split into {needed} parts needs at least {needed} {unit}; the data set has {len(units)}"
        )
    rng = np.random.default_rng(seed)
    order = [int(u) for u in rng.permutation(len(units))]
    if folds:
        if not 0 <= fold < folds:
            raise UserError(f"fold must lie in 0..{folds - 1}, got {fold}")
        if folds > len(units):
            raise UserError(f"{folds} folds need at least {folds} split units; the data set has {len(units)}")
        sizes = [0] * folds
        fold_of = {}
        for u in sorted(order, key=lambda u: -len(units[u])):  # largest units first, stable in the seeded order
            f = min(range(folds), key=lambda k: (sizes[k], k))
            fold_of[u] = f
            sizes[f] += len(units[u])
        test = [u for u in order if fold_of[u] == fold]
        rest = [u for u in order if fold_of[u] != fold]
    else:
        test, rest = _take(units, order, test_fraction * n) if test_fraction > 0 else ([], order)
    val, train = _take(units, rest, val_fraction * n)
    if not train or not val:
        raise UserError(
            f"the split left no {'training' if not train else 'validation'} images; lower val_fraction/test_fraction"
        )
    parts = [""] * n
    for name, chosen in (("train", train), ("val", val), ("test", test)):
        for u in chosen:
            for i in units[u]:
                parts[i] = name
    return parts
