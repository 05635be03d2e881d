"""Augmentation pipelines (albumentations, mask-aware).

albumentations is used only here, so it can be swapped without touching the rest of the package.
Images arrive already resized to the training size; every pipeline keeps the size fixed. ``strength``
scales the geometric and intensity ranges (0: none, 1: the defaults below).
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never contact the network at import

import albumentations as A
import numpy as np

from elasticnet.errors import UserError

KINDS = ("endoscopy", "mammography", "none")


def endoscopy_augmentation(seed: int, strength: float = 1.0) -> A.Compose:
    """Flips, small affine moves, brightness/contrast and colour jitter, for colonoscopy frames."""
    s = strength
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Affine(
                scale=(1 - 0.1 * s, 1 + 0.1 * s),
                translate_percent=(-0.05 * s, 0.05 * s),
                rotate=(-15 * s, 15 * s),
                p=0.5,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.15 * s, contrast_limit=0.15 * s, p=0.5),
            A.HueSaturationValue(hue_shift_limit=5 * s, sat_shift_limit=10 * s, val_shift_limit=5 * s, p=0.3),
        ],
        seed=seed,
    )


def mammography_augmentation(seed: int, strength: float = 1.0) -> A.Compose:
    """Left/right and up/down flips, small rotation and scale, contrast and gamma, for grey mammograms."""
    s = strength
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.2),
            A.Affine(scale=(1 - 0.1 * s, 1 + 0.1 * s), rotate=(-10 * s, 10 * s), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1 * s, contrast_limit=0.2 * s, p=0.5),
            A.RandomGamma(gamma_limit=(100 - 20 * s, 100 + 20 * s), p=0.3),
        ],
        seed=seed,
    )


def build(kind: str, seed: int, strength: float = 1.0) -> A.Compose | None:
    if kind not in KINDS:
        raise UserError(f"unknown augmentation {kind!r}; use one of {', '.join(KINDS)} (or auto)")
    if kind == "none" or strength <= 0:
        return None
    return (endoscopy_augmentation if kind == "endoscopy" else mammography_augmentation)(seed, strength)


def apply(
    pipeline: A.Compose | None, image: np.ndarray, mask: np.ndarray, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one (image, mask) pair; with ``seed`` the result depends on nothing else."""
    if pipeline is None:
        return image, mask
    if seed is not None:
        pipeline.set_random_seed(seed)  # ~0.2 ms, small next to the transforms themselves
    out = pipeline(image=image, mask=mask)
    return out["image"], out["mask"]
