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
    n = 5 - 2 * torch.arange(3, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)  # 5, 3, 1: no host copy
    k = (n + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def upload(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device`` without waiting for the device: on a GPU through pinned memory with a
    non-blocking copy (a plain copy from pageable memory would wait for every step queued before it)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


# the columns of the per-item parameters sent to the device in one copy per batch
THETA = slice(0, 6)
CONTRAST_COL, BRIGHTNESS_COL, HSV_COL, HUE_COL, SATURATION_COL, VALUE_COL, GAMMA_COL = range(6, 13)


def item_parameters(sp: AugmentSpec, u: np.ndarray, height: int, width: int) -> np.ndarray:
    """(B, 13) float32: each item's sampling matrix (6), contrast, brightness, HSV on/off, hue (turns),
    saturation and value offsets (0-1 units) and gamma exponent, from its uniform draws ``u``."""
    on = u[:, INTENSITY] < sp.intensity_p
    gamma_on = u[:, GAMMA_ON] < sp.gamma_p
    columns = [
        sampling_grids(sp, u, height, width).reshape(len(u), 6),
        np.where(on, 1 + _between(u[:, CONTRAST], sp.contrast), 1.0)[:, None],
        np.where(on, _between(u[:, BRIGHTNESS], sp.brightness), 0.0)[:, None],
        (u[:, HSV] < sp.hsv_p).astype(np.float64)[:, None],
        (_between(u[:, HUE], sp.hue) / 180.0)[:, None],  # OpenCV hue units: 180 per turn
        (_between(u[:, SATURATION], sp.saturation) / 255.0)[:, None],
        (_between(u[:, VALUE], sp.value) / 255.0)[:, None],
        np.where(gamma_on, 1 + _between(u[:, GAMMA], sp.gamma / 100), 1.0)[:, None],
    ]
    return np.concatenate(columns, axis=1).astype(np.float32)


class BatchAugment:
    """Augment and normalise a batch on its device: uint8 ``(B, C, H, W)`` images and ``(B, 1, H, W)`` 0/255
    masks in, float normalised images and {0, 1} masks out. ``spec`` None: normalise only.

    The per-item parameters are drawn on the host and sent in one non-blocking copy; which optional transforms
    run at all is decided on the host too, so a batch never makes the host wait for the device."""

    def __init__(self, spec: AugmentSpec | None, mean: Sequence[float], std: Sequence[float]):
        self.spec = spec
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def __call__(
        self, images: torch.Tensor, masks: torch.Tensor, seeds: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        device = images.device
        if self.mean.device != device:  # moved once, not per batch
            self.mean, self.std = self.mean.to(device), self.std.to(device)
        x = images.float() / 255.0
        m = masks.float() / 255.0
        sp = self.spec
        if sp is not None:
            params = item_parameters(sp, draws(seeds), x.shape[2], x.shape[3])
            p = upload(params, device)
            grid = F.affine_grid(p[:, THETA].reshape(-1, 2, 3), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            m = F.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
            x = self._intensity(x, p, params)
        return (x - self.mean) / self.std, (m > 0.5).float()

    @staticmethod
    def _intensity(x: torch.Tensor, p: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        def column(i: int) -> torch.Tensor:
            return p[:, i].view(-1, 1, 1, 1)

        x = (x * column(CONTRAST_COL) + column(BRIGHTNESS_COL)).clamp(0, 1)
        if x.shape[1] == 3 and params[:, HSV_COL].any():
            shifted = _hue_saturation_value(x, column(HUE_COL), column(SATURATION_COL), column(VALUE_COL))
            x = torch.where(column(HSV_COL) > 0, shifted, x)
        if (params[:, GAMMA_COL] != 1).any():
            x = x.clamp_min(0) ** column(GAMMA_COL)
        return x
