"""Augmentation pipelines (albumentations, mask-aware).

albumentations is used only here, so it can be swapped without touching the rest of the package.
Images arrive already resized to the training size, so every pipeline keeps the size fixed.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never contact the network at import

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402


def endoscopy_augmentation(seed: int) -> A.Compose:
    """Flips, small affine moves, brightness/contrast and colour jitter, for colonoscopy frames."""
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.Affine(scale=(0.9, 1.1), translate_percent=(-0.05, 0.05), rotate=(-15, 15), p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
            A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=10, val_shift_limit=5, p=0.3),
        ],
        seed=seed,
    )


def apply(pipeline: A.Compose | None, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pipeline is None:
        return image, mask
    out = pipeline(image=image, mask=mask)
    return out["image"], out["mask"]
