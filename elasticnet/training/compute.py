"""Training compute, counted from the model: the FLOPs of every sub-net pass actually run.

The parity protocol compares an elastic training with the individual U-Nets it replaces at equal compute,
so compute must not be read off wall time (machines differ). A training pass of a sub-net costs 3 x its
forward conv FLOPs per image (forward, and backward for inputs and weights); a teacher pass without
gradient costs 1 x. Counted with :func:`elasticnet.models.complexity.count_flops` on the meta device.
"""

from __future__ import annotations

from collections.abc import Sequence

from elasticnet.models.config import ElasticUNetConfig
from elasticnet.models.subnet import SubNet

TRAIN_PASS = 3  # forward + backward (input and weight gradients), in forward units


def subnet_flops(config: ElasticUNetConfig, size: tuple[int, int]) -> dict[SubNet, float]:
    """Forward FLOPs of one image of ``size`` for every configured sub-net."""
    from elasticnet.models.complexity import count_flops
    from elasticnet.models.unet import UNetConfig

    return {
        s: float(
            count_flops(
                UNetConfig(channels=config.channels(s), in_channels=config.in_channels, num_classes=config.num_classes),
                size,
            )
        )
        for s in config.subnets()
    }


def step_flops(
    flops: dict[SubNet, float], trained: Sequence[SubNet], images: int, teacher: Sequence[SubNet] = ()
) -> float:
    """FLOPs of one step: ``trained`` sub-nets with gradients and ``teacher`` passes without, on ``images``."""
    return images * (TRAIN_PASS * sum(flops[s] for s in trained) + sum(flops[s] for s in teacher))
