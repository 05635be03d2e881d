"""Augmentation: what each pipeline does (:class:`AugmentSpec`, one definition), and its albumentations form.

The same spec drives two implementations: the albumentations pipeline here (per image, in the loader, on
the host) and the batched torch one in :mod:`elasticnet.data.batch_augment` (on the training device). They
apply the same transforms with the same probabilities and ranges; their random draws differ, so a run's
images depend on which one it used (``augment_on`` in the run's config). albumentations is imported only
here, so it can be swapped without touching the rest of the package. Images arrive already resized to the
training size; every pipeline keeps the size fixed. ``strength`` scales the geometric and intensity ranges
(0: none, 1: the defaults below).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # never contact the network at import

import albumentations as A
import numpy as np

from elasticnet.errors import UserError

KINDS = ("endoscopy", "mammography", "none")


@dataclass(frozen=True)
class AugmentSpec:
    """The transforms of one pipeline, in order; a probability of 0 leaves a transform out.

    Ranges are symmetric: ``scale`` 0.1 means a zoom factor in [0.9, 1.1], ``translate`` a shift of up to that
    share of the side, ``rotate`` degrees, ``brightness`` an offset of up to that share of the maximum,
    ``contrast`` a factor in [1 - c, 1 + c], ``hue`` OpenCV hue units (2 degrees), ``saturation`` and ``value``
    offsets in 0-255 units, ``gamma`` percent around 100.
    """

    hflip: float
    vflip: float
    affine_p: float
    scale: float
    translate: float
    rotate: float
    intensity_p: float
    brightness: float
    contrast: float
    hsv_p: float = 0.0
    hue: float = 0.0
    saturation: float = 0.0
    value: float = 0.0
    gamma_p: float = 0.0
    gamma: float = 0.0


def endoscopy_spec(strength: float = 1.0) -> AugmentSpec:
    """Flips, small affine moves, brightness/contrast and colour jitter, for colonoscopy frames."""
    s = strength
    return AugmentSpec(
        hflip=0.5,
        vflip=0.5,
        affine_p=0.5,
        scale=0.1 * s,
        translate=0.05 * s,
        rotate=15 * s,
        intensity_p=0.5,
        brightness=0.15 * s,
        contrast=0.15 * s,
        hsv_p=0.3,
        hue=5 * s,
        saturation=10 * s,
        value=5 * s,
    )


def mammography_spec(strength: float = 1.0) -> AugmentSpec:
    """Left/right and up/down flips, small rotation and scale, contrast and gamma, for grey mammograms."""
    s = strength
    return AugmentSpec(
        hflip=0.5,
        vflip=0.2,
        affine_p=0.5,
        scale=0.1 * s,
        translate=0.0,
        rotate=10 * s,
        intensity_p=0.5,
        brightness=0.1 * s,
        contrast=0.2 * s,
        gamma_p=0.3,
        gamma=20 * s,
    )


def spec(kind: str, strength: float = 1.0) -> AugmentSpec | None:
    """The spec of pipeline ``kind`` at ``strength`` (None: no augmentation)."""
    if kind not in KINDS:
        raise UserError(f"unknown augmentation {kind!r}; use one of {', '.join(KINDS)} (or auto)")
    if kind == "none" or strength <= 0:
        return None
    return (endoscopy_spec if kind == "endoscopy" else mammography_spec)(strength)


def albumentations_pipeline(sp: AugmentSpec, seed: int) -> A.Compose:
    """``sp`` as an albumentations pipeline (per image, uint8 in and out)."""
    transforms: list = [A.HorizontalFlip(p=sp.hflip), A.VerticalFlip(p=sp.vflip)]
    if sp.affine_p > 0:
        moves = {"translate_percent": (-sp.translate, sp.translate)} if sp.translate else {}
        transforms.append(
            A.Affine(scale=(1 - sp.scale, 1 + sp.scale), rotate=(-sp.rotate, sp.rotate), p=sp.affine_p, **moves)
        )
    if sp.intensity_p > 0:
        transforms.append(
            A.RandomBrightnessContrast(brightness_limit=sp.brightness, contrast_limit=sp.contrast, p=sp.intensity_p)
        )
    if sp.hsv_p > 0:
        transforms.append(
            A.HueSaturationValue(
                hue_shift_limit=sp.hue, sat_shift_limit=sp.saturation, val_shift_limit=sp.value, p=sp.hsv_p
            )
        )
    if sp.gamma_p > 0:
        transforms.append(A.RandomGamma(gamma_limit=(100 - sp.gamma, 100 + sp.gamma), p=sp.gamma_p))
    return A.Compose(transforms, seed=seed)


def build(kind: str, seed: int, strength: float = 1.0) -> A.Compose | None:
    """The albumentations pipeline of ``kind`` (None: no augmentation)."""
    sp = spec(kind, strength)
    return None if sp is None else albumentations_pipeline(sp, seed)


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
