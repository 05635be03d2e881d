"""One optimiser step of elastic training: each planned sub-net's forward and backward pass on the batch,
their weighted gradients summed, then one update (with the inactive-weight freezer and gradient clipping).

Kept apart from the loop (:mod:`elasticnet.training.trainer`) so that benchmarks and tests time and check a
step exactly as training runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch

from elasticnet.errors import UserError
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.training import distributed
from elasticnet.training.inactive import InactiveWeightFreezer
from elasticnet.training.losses import TaskLoss, distillation_loss
from elasticnet.training.precision import Precision
from elasticnet.training.projection import GradientProjection
from elasticnet.training.recipe import StepOptions


class NonFiniteLoss(UserError):
    """The loss (or the weights) stopped being finite numbers."""


def forward_backward(
    model: ElasticUNet,
    images: torch.Tensor,
    masks: torch.Tensor,
    subnets: Sequence[SubNet],
    distill_weight: float | None,
    region: str = "image",
    precision: Precision | None = None,
    check_finite: bool = True,
    weights: Sequence[float] | None = None,
    teacher: torch.Tensor | None = None,
    distill_loss: str = "bce_dice",
    task: TaskLoss | None = None,
    projection: GradientProjection | None = None,
) -> torch.Tensor:
    """Run each sub-net on the batch and accumulate its (weighted) gradients; returns the mean weighted loss
    (a 0-d tensor on the device: the caller reads it once per step, so a GPU is not synchronised per sub-net).

    With ``distill_weight``, every sub-net other than the largest also matches the ``teacher``
    probabilities: given (an EMA teacher's), or the largest sub-net's of this step, detached (taken from
    this step's largest forward, or computed without gradient when the largest is not among ``subnets``).
    ``precision`` runs the forward passes in bf16/fp16 (losses in fp32). With ``check_finite`` a non-finite
    loss on the CPU names its sub-net (on a GPU that check would synchronise; the caller checks the step's
    mean loss instead). With ``projection`` the largest's gradient and the others' are combined by its rule
    (:mod:`elasticnet.training.projection`) instead of summed.
    """
    precision = precision or Precision("none", images.device.type)
    task = task or TaskLoss(region=region)
    weights = [1.0] * len(subnets) if weights is None else list(weights)
    largest = model.config.largest
    total = torch.zeros((), device=images.device)
    for subnet, weight in zip(subnets, weights):
        with precision.autocast():
            logits = model(images, subnet)
        logits = logits.float()
        loss = task(logits, masks)
        if distill_weight is not None:
            if subnet == largest:
                if teacher is None:  # the live teacher: this forward's probabilities
                    teacher = torch.sigmoid(logits).detach()
            else:
                if teacher is None:
                    with torch.no_grad(), precision.autocast():
                        teacher = torch.sigmoid(model(images, largest).float())
                loss = loss + distill_weight * distillation_loss(logits, teacher, region, distill_loss)
        if check_finite and images.device.type == "cpu" and not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"the loss became {loss.item()} at {subnet} (step's batch); lower --lr or check "
                "the data for broken images"
            )
        precision.backward(weight * loss)
        total = total + weight * loss.detach()
        if projection is not None and subnet == largest:
            projection.after_largest()
    if projection is not None:
        projection.combine()
    return total / len(subnets)


def train_step(
    model: ElasticUNet,
    optimizer: torch.optim.Optimizer,
    precision: Precision,
    freezer: InactiveWeightFreezer | None,
    images: torch.Tensor,
    masks: torch.Tensor,
    subnets: Sequence[SubNet],
    options: StepOptions | None = None,
    dist: distributed.Dist | None = None,
    weights: Sequence[float] | None = None,
    teacher: torch.Tensor | None = None,
) -> torch.Tensor:
    """One optimiser step over ``subnets`` (their weighted gradients summed); returns the mean loss on the
    device.

    The freezer, when given, puts back the entries of the weights (and optimiser moments) that none of
    ``subnets`` used, which the optimiser would otherwise move (see :mod:`elasticnet.training.inactive`).
    """
    options = options or StepOptions()
    optimizer.zero_grad(set_to_none=True)
    enabled = dist is not None and dist.enabled
    loss = forward_backward(
        model,
        images,
        masks,
        subnets,
        options.distill_weight,
        options.region,
        precision,
        check_finite=not enabled,
        weights=weights,
        teacher=teacher,
        distill_loss=options.distill_loss,
        task=options.task,
        projection=GradientProjection(options.grad_projection, model.parameters())
        if options.grad_projection != "none" and len(subnets) > 1
        else None,
    )
    if enabled:
        distributed.average_gradients(model, dist)
    with freezer.step(subnets) if freezer is not None else nullcontext():
        precision.step(optimizer, model.parameters() if options.grad_clip else None, options.grad_clip)
    return loss
