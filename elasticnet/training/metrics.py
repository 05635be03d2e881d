"""Per-image Dice and IoU at a threshold, averaged over images."""

from __future__ import annotations

import torch


def dice_iou_per_image(
    prob: torch.Tensor, target: torch.Tensor, threshold: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice and IoU of each image (N,) from probabilities and 0/1 targets of shape (N, 1, H, W).

    An image whose mask and prediction are both empty scores 1 (a correct "nothing here").
    """
    pred = (prob > threshold).flatten(1).float()
    target = (target > 0.5).flatten(1).float()
    inter = (pred * target).sum(1)
    total = pred.sum(1) + target.sum(1)
    union = total - inter
    empty = total == 0
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / total.clamp_min(1))
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    return dice, iou
