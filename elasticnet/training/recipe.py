"""What each training step does: which sub-nets run with which loss weights, distillation from which
teacher, gradient clipping, and the compute it costs. Built once per run from the config; the training loop
asks it for each step's plan, so a new training rule is added here, not in the loop."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from elasticnet.config import RunConfig
from elasticnet.models.elastic_unet import ElasticUNet
from elasticnet.models.subnet import SubNet
from elasticnet.training.compute import step_flops, subnet_flops
from elasticnet.training.losses import TaskLoss
from elasticnet.training.sampler import SubNetSampler, parse_subnets, parse_weights
from elasticnet.training.schedule import distill_weight_at
from elasticnet.training.teacher import EmaTeacher


@dataclass(frozen=True)
class StepOptions:
    """What a training step does besides the forward and backward passes of its sub-nets."""

    region: str = "image"  # the region term (Dice or Tversky) per image or over the batch
    distill_weight: float | None = None  # None: no distillation at this step
    distill_loss: str = "bce_dice"  # bce_dice | bce (against the teacher's probabilities)
    grad_clip: float = 0.0  # global norm of the summed gradient (0: off)
    grad_projection: str = "none"  # none | largest | subnets (elasticnet.training.projection)
    task: TaskLoss | None = None  # the segmentation loss (None: BCE + soft Dice per ``region``)


@dataclass(frozen=True)
class StepPlan:
    subnets: list[SubNet]
    weights: list[float]
    options: StepOptions
    ema_teacher: bool  # the teacher's probabilities come from the EMA model (one pass without gradient)


def sampler_for(cfg: RunConfig, total_steps: int = 0, flops: dict[SubNet, float] | None = None) -> SubNetSampler:
    t = cfg.train
    return SubNetSampler(
        tuple(cfg.model.depths),
        tuple(cfg.model.widths),
        t.strategy,
        t.num_random,
        t.seed,
        always=parse_subnets(t.always_subnets),
        random_by_flops=t.random_by_flops,
        weight_smallest=t.weight_smallest,
        weight_random=t.weight_random,
        weights=parse_weights(t.subnet_weights),
        total_steps=total_steps,
        shrink_start=t.shrink_start,
        width_start=t.width_start,
        ramp=t.ramp,
        flops=flops or ({s: 1.0 for s in cfg.model.subnets()} if t.random_by_flops else {}),
    )


class Recipe:
    """The per-step plan of one run (``total_steps`` fixes the phases) and the EMA teacher, if any."""

    def __init__(
        self,
        cfg: RunConfig,
        model: ElasticUNet | None,
        total_steps: int,
        image_size: tuple[int, int],
        flops: dict[SubNet, float] | None = None,
    ):
        t = cfg.train
        self.cfg, self.total_steps = cfg, total_steps
        self.flops = flops or subnet_flops(cfg.model, image_size)
        self.sampler = sampler_for(cfg, total_steps, self.flops)
        self.base = StepOptions(
            region=t.dice_loss,
            distill_loss=t.distill_loss,
            grad_clip=t.grad_clip,
            grad_projection=t.grad_projection,
            task=TaskLoss(t.loss, t.dice_loss, t.pos_weight),
        )
        self.uses_ema = t.distill and t.distill_teacher == "ema"
        # model None: planning only (e.g. the compute of a run before training it)
        self.teacher = EmaTeacher(model, t.ema_decay) if self.uses_ema and model is not None else None

    def plan(self, step: int) -> StepPlan:
        t = self.cfg.train
        weighted = self.sampler.sample_weighted(step)
        subnets, weights = [s for s, _ in weighted], [w for _, w in weighted]
        distill = (
            distill_weight_at(step, self.total_steps, t.distill_weight, t.distill_start, t.ramp) if t.distill else None
        )
        # distilling needs a student: a step that trains only the largest has none
        if distill is not None and all(s == self.sampler.largest for s in subnets):
            distill = None
        return StepPlan(
            subnets, weights, replace(self.base, distill_weight=distill), distill is not None and self.uses_ema
        )

    def teacher_probabilities(self, plan: StepPlan, images: torch.Tensor, precision) -> torch.Tensor | None:
        return self.teacher.probabilities(images, self.sampler.largest, precision) if plan.ema_teacher else None

    def after_step(self, model: ElasticUNet) -> None:
        if self.teacher is not None:
            self.teacher.update(model)

    def step_flops(self, plan: StepPlan, images: int) -> float:
        """Model FLOPs of the step: 3x forward per trained sub-net, 1x per teacher pass without gradient."""
        teacher = []
        if plan.options.distill_weight is not None and (plan.ema_teacher or self.sampler.largest not in plan.subnets):
            teacher = [self.sampler.largest]
        return step_flops(self.flops, plan.subnets, images, teacher)


def planned_flops(
    cfg: RunConfig,
    steps_per_epoch: int,
    images_per_step: int,
    epochs: int,
    image_size: tuple[int, int],
    flops: dict[SubNet, float] | None = None,
) -> float:
    """The training FLOPs a run of ``epochs`` epochs will cost, exactly: the sub-nets of every step are a
    function of (seed, step), so the plan can be summed before training."""
    total = epochs * steps_per_epoch
    recipe = Recipe(cfg, None, total, image_size, flops)
    return sum(recipe.step_flops(recipe.plan(step), images_per_step) for step in range(total))


def epochs_within(
    cfg: RunConfig,
    steps_per_epoch: int,
    images_per_step: int,
    budget: float,
    image_size: tuple[int, int],
    most: int = 10000,
) -> int:
    """The most epochs whose planned training FLOPs stay within ``budget`` (0 if not even one fits)."""
    flops = subnet_flops(cfg.model, image_size)

    def fits(epochs: int) -> bool:
        return planned_flops(cfg, steps_per_epoch, images_per_step, epochs, image_size, flops) <= budget

    # more epochs cost more (each step's sub-nets cost >= 0): bisect between a fitting and a failing count
    low, high = 0, 1
    while high <= most and fits(high):
        low, high = high, 2 * high
    high = min(high, most + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low
