"""Losses for binary segmentation: BCE + soft Dice, and the self-distillation term."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0, per_image: bool = True
) -> torch.Tensor:
    """1 - soft Dice, per image then averaged (or over the whole batch as one region, ``per_image=False``,
    which punishes a few false-positive pixels on an empty image far less). ``target`` may be soft."""
    rows = logits.shape[0] if per_image else 1
    prob, target = torch.sigmoid(logits).reshape(rows, -1), target.reshape(rows, -1)
    inter = (prob * target).sum(1)
    denom = prob.sum(1) + target.sum(1)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def focal_tversky_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 0.7,
    gamma: float = 0.75,
    eps: float = 1.0,
    per_image: bool = False,
) -> torch.Tensor:
    """Focal Tversky loss (Abraham & Khan, 2019): (1 - TI)^gamma with the Tversky index TI = TP / (TP + alpha FN
    + (1 - alpha) FP). ``alpha`` > 0.5 weighs missed lesion pixels above false alarms (small, rare lesions);
    ``gamma`` < 1 keeps the gradient up for regions already partly found."""
    rows = logits.shape[0] if per_image else 1
    prob, target = torch.sigmoid(logits).reshape(rows, -1), target.reshape(rows, -1)
    tp = (prob * target).sum(1)
    fn = ((1 - prob) * target).sum(1)
    fp = (prob * (1 - target)).sum(1)
    index = (tp + eps) / (tp + alpha * fn + (1 - alpha) * fp + eps)
    return (1 - index).clamp_min(0).pow(gamma).mean()


@dataclass(frozen=True)
class TaskLoss:
    """The training loss of a segmentation step: BCE (``pos_weight`` on lesion pixels) plus a region term,
    soft Dice (``bce_dice``) or focal Tversky (``bce_focal_tversky``), per image or over the batch (``region``)."""

    kind: str = "bce_dice"
    region: str = "image"  # the region term per image, or over the batch as one region
    pos_weight: float = 1.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.pos_weight == 1.0 else torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
        per_image = self.region == "image"
        if self.kind == "bce_focal_tversky":
            return bce + focal_tversky_loss(logits, target, per_image=per_image)
        return bce + soft_dice_loss(logits, target, per_image=per_image)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, region: str = "image") -> torch.Tensor:
    """BCE (with logits) + soft Dice (``dice``: "image" or "batch"), equally weighted. ``target`` holds
    0/1 (or soft) values."""
    return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(
        logits, target, per_image=region == "image"
    )


def distillation_loss(
    student_logits: torch.Tensor, teacher_prob: torch.Tensor, region: str = "image", kind: str = "bce_dice"
) -> torch.Tensor:
    """In-place self-distillation (Yu & Huang, 2019): match the teacher's detached probabilities.

    ``bce_dice``: the task loss (BCE + soft Dice) with the probabilities as soft targets. ``bce``: per-pixel
    BCE only, the Bernoulli analogue of the KL term of the classification recipes (soft Dice against soft
    targets is not a divergence: it is minimised by sharpened, not matched, probabilities).
    """
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(student_logits, teacher_prob.detach())
    return segmentation_loss(student_logits, teacher_prob.detach(), region)
