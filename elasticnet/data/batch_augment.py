"""The augmentation pipelines of :mod:`elasticnet.data.augment`, batched in torch, on the training device.

A GPU that waits for a CPU loader to augment images one by one trains at the loader's speed. Here a whole
batch is augmented at once where it will be used: flips and the affine move as one ``grid_sample`` per batch
(bilinear for images, nearest for masks, zero border, as albumentations' ``Affine``), then brightness /
contrast, hue / saturation / value and gamma as tensor arithmetic. Every random number is drawn on the host
from the item's own seed (the ``(index, seed)`` keys of :class:`elasticnet.training.order.EpochSampler`), so
an item is augmented the same whatever batch it lands in, and an interrupted run resumes exactly. The
transforms, probabilities and ranges are those of :class:`~elasticnet.data.augment.AugmentSpec`; the draws
differ from albumentations', so the two paths give different (equally distributed) images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from elasticnet.data.augment import AugmentSpec

# the columns of an item's uniform draws; all are drawn whatever the spec, so no transform shifts another's
(
    FLIP_X,
    FLIP_Y,
    AFFINE,
    ZOOM,
    ANGLE,
    SHIFT_X,
    SHIFT_Y,
    INTENSITY,
    CONTRAST,
    BRIGHTNESS,
    HSV,
    HUE,
    SATURATION,
    VALUE,
    GAMMA_ON,
    GAMMA,
) = range(16)
_DRAWS = 16


def draws(seeds: Sequence[int]) -> np.ndarray:
    """(B, _DRAWS) uniform numbers in [0, 1): row i a function of ``seeds[i]`` only."""
    return np.stack([np.random.default_rng([int(s) & 0xFFFFFFFFFFFFFFFF, 3]).random(_DRAWS) for s in seeds])


def _between(u: np.ndarray, limit: float) -> np.ndarray:
    return (2 * u - 1) * limit


def sampling_grids(sp: AugmentSpec, u: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, 2, 3) ``affine_grid`` matrices: for each output pixel, where to read in the input.

    The forward move is a left/right flip, an up/down flip, then a zoom, rotation and shift about the
    centre (albumentations' order); the matrix is its inverse, in ``grid_sample``'s normalised coordinates
    (``align_corners=False``: a pixel centre at (2i + 1) / n - 1, so flips map pixel centres onto pixel centres).
    """
    b = len(u)
    flip_x = np.where(u[:, FLIP_X] < sp.hflip, -1.0, 1.0)
    flip_y = np.where(u[:, FLIP_Y] < sp.vflip, -1.0, 1.0)
    moved = u[:, AFFINE] < sp.affine_p
    zoom = np.where(moved, 1 + _between(u[:, ZOOM], sp.scale), 1.0)
    angle = np.where(moved, np.deg2rad(_between(u[:, ANGLE], sp.rotate)), 0.0)
    shift_x = np.where(moved, _between(u[:, SHIFT_X], sp.translate) * width, 0.0)
    shift_y = np.where(moved, _between(u[:, SHIFT_Y], sp.translate) * height, 0.0)
    grids = np.zeros((b, 2, 3))
    half = np.array([width / 2, height / 2])
    for i in range(b):
        c, s = math.cos(angle[i]), math.sin(angle[i])
        forward = zoom[i] * np.array([[c, -s], [s, c]]) @ np.diag([flip_x[i], flip_y[i]])  # in pixels
        inverse = np.linalg.inv(forward)
        shift = np.array([shift_x[i], shift_y[i]])
        # pixels: p_in = inverse @ (p_out - shift); normalised: n = p / half
        grids[i, :, :2] = np.diag(1 / half) @ inverse @ np.diag(half)
        grids[i, :, 2] = -(np.diag(1 / half) @ inverse @ shift)
    return grids


def _hue_saturation_value(x: torch.Tensor, hue: torch.Tensor, sat: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Shift RGB images in [0, 1] in HSV space: hue by ``hue`` turns, saturation and value by offsets."""
    maxc, minc = x.max(dim=1, keepdim=True).values, x.min(dim=1, keepdim=True).values
    delta = maxc - minc
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2 + (b - r) / safe, 4 + (r - g) / safe))
    h = torch.where(delta > 0, h / 6, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + hue) % 1.0
    s = (s + sat).clamp(0, 1)
    v = (maxc + val).clamp(0, 1)
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


class BatchAugment:
    """Augment and normalise a batch on its device: uint8 ``(B, C, H, W)`` images and ``(B, 1, H, W)`` 0/255
    masks in, float normalised images and {0, 1} masks out. ``spec`` None: normalise only."""

    def __init__(self, spec: AugmentSpec | None, mean: Sequence[float], std: Sequence[float]):
        self.spec, self.mean, self.std = spec, tuple(mean), tuple(std)

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device, channels = images.device, images.shape[1]
        x = images.float() / 255.0
        m = masks.float() / 255.0
        sp = self.spec
        if sp is not None:
            u = draws(seeds)
            theta = torch.from_numpy(sampling_grids(sp, u, x.shape[2], x.shape[3])).float().to(device)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
            x = self._intensity(x, sp, u, channels)
        mean = torch.tensor(self.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, -1, 1, 1)
        return (x - mean) / std, (m > 0.5).float()

    @staticmethod
    def _intensity(x: torch.Tensor, sp: AugmentSpec, u: np.ndarray, channels: int) -> torch.Tensor:
        def per_item(values: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(values).float().to(x.device).view(-1, 1, 1, 1)

        on = u[:, INTENSITY] < sp.intensity_p
        contrast = per_item(np.where(on, 1 + _between(u[:, CONTRAST], sp.contrast), 1.0))
        brightness = per_item(np.where(on, _between(u[:, BRIGHTNESS], sp.brightness), 0.0))
        x = (x * contrast + brightness).clamp(0, 1)
        hsv = u[:, HSV] < sp.hsv_p
        if channels == 3 and hsv.any():
            shifted = _hue_saturation_value(
                x,
                per_item(_between(u[:, HUE], sp.hue) / 180.0),  # OpenCV hue units: 180 per turn
                per_item(_between(u[:, SATURATION], sp.saturation) / 255.0),
                per_item(_between(u[:, VALUE], sp.value) / 255.0),
            )
            x = torch.where(per_item(hsv.astype(np.float32)) > 0, shifted, x)
        gamma_on = u[:, GAMMA_ON] < sp.gamma_p
        if sp.gamma_p > 0 and gamma_on.any():
            exponent = per_item(np.where(gamma_on, 1 + _between(u[:, GAMMA], sp.gamma / 100), 1.0))
            x = x.clamp_min(0) ** exponent
        return x
