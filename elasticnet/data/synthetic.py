"""A built-in synthetic polyp data set, generated deterministically from a seed.

Each frame imitates a colonoscopy view: a shaded, textured reddish mucosa with folds, a vignette from the
endoscope's light, specular highlights, sensor noise, and one or two polyps. A polyp has an irregular
outline, a soft edge, dome shading and a colour only slightly different from the mucosa (low contrast),
so its interior is hard to tell from the background locally: large polyps need the context that deeper
U-Nets see, small ones need fine resolution. Sizes range from tiny to a third of the frame.

Frame ``i`` of seed ``s`` depends only on ``(s, i)`` and the requested size, so any subset can be
regenerated, in any order, in any process.
"""

from __future__ import annotations

import cv2
import numpy as np


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1] with features about ``cell`` pixels wide."""
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    s = min(h, w)
    t = (
        0.5 * _smooth_noise(rng, h, w, s / 4)
        + 0.3 * _smooth_noise(rng, h, w, s / 12)
        + 0.2 * _smooth_noise(rng, h, w, s / 40)
    )
    return t - 0.5


def _polyp(rng: np.random.Generator, h: int, w: int, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha in [0, 1], dome shading in [0, 1]) of one polyp with an irregular, soft outline."""
    s = min(h, w)
    radius = s * float(np.exp(rng.uniform(np.log(0.04), np.log(0.33))))
    cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
    aspect = rng.uniform(0.7, 1.3)
    dy, dx = (yy - cy) * aspect, (xx - cx) / aspect
    dist = np.sqrt(dy**2 + dx**2)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(theta)
    for k in (2, 3, 5):
        outline += rng.uniform(0.0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * outline
    edge = rng.uniform(1.0, 3.0)
    alpha = np.clip((r - dist) / edge + 0.5, 0, 1)
    dome = np.clip(1 - (dist / np.maximum(r, 1e-3)) ** 2, 0, 1)
    return alpha.astype(np.float32), dome.astype(np.float32)


def _highlights(rng: np.random.Generator, h: int, w: int, count: int, where: np.ndarray | None = None) -> np.ndarray:
    layer = np.zeros((h, w), np.float32)
    for _ in range(count):
        if where is not None and where.any():
            ys, xs = np.nonzero(where)
            i = rng.integers(len(ys))
            cy, cx = int(ys[i]), int(xs[i])
        else:
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
        axes = (max(1, int(rng.uniform(0.005, 0.03) * w)), max(1, int(rng.uniform(0.003, 0.015) * h)))
        cv2.ellipse(layer, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return cv2.GaussianBlur(layer, (0, 0), 1.0)


def synthetic_polyp(seed: int, index: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (RGB image uint8 HxWx3, mask uint8 HxW with 0/255)."""
    rng = np.random.default_rng([seed, index])
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    mucosa = np.array([rng.uniform(0.60, 0.85), rng.uniform(0.25, 0.42), rng.uniform(0.18, 0.32)], np.float32)
    shade = 1.0 + 0.3 * _texture(rng, h, w)
    # Folds: dark, wavy bands across the frame.
    for _ in range(int(rng.integers(1, 4))):
        phase, freq, amp = rng.uniform(0, 2 * np.pi), rng.uniform(1, 3) * np.pi / w, rng.uniform(0.05, 0.3) * h
        y0 = rng.uniform(0, h)
        band = np.abs(yy - (y0 + amp * np.sin(freq * xx + phase)))
        shade -= 0.25 * np.exp(-((band / (0.02 * h + 1)) ** 2))
    # Vignette around the light source.
    ly, lx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    vignette = 1.0 - 0.55 * (((yy - ly) / h) ** 2 + ((xx - lx) / w) ** 2) * 2.2
    img = mucosa[None, None, :] * (shade * vignette)[..., None]

    mask = np.zeros((h, w), np.float32)
    for _ in range(1 if rng.random() < 0.75 else 2):
        alpha, dome = _polyp(rng, h, w, yy, xx)
        contrast = rng.uniform(0.08, 0.25) * rng.choice([-1.0, 1.0])
        tint = mucosa * (1 + contrast) + rng.normal(0, 0.03, 3).astype(np.float32)
        surface = tint[None, None, :] * (1.0 + 0.12 * _texture(rng, h, w) + 0.3 * (dome - 0.5))[..., None]
        surface *= vignette[..., None]
        img = img * (1 - alpha[..., None]) + surface * alpha[..., None]
        # A thin shadow ring at the base makes the outline visible without giving away the interior.
        ring = np.clip(1 - np.abs(alpha - 0.5) * 2, 0, 1)
        img *= 1 - rng.uniform(0.1, 0.3) * ring[..., None]
        mask = np.maximum(mask, alpha)
        img += _highlights(rng, h, w, int(rng.integers(0, 3)), where=alpha > 0.5)[..., None] * 0.8

    img += _highlights(rng, h, w, int(rng.integers(2, 8)))[..., None] * 0.9
    img += rng.normal(0, 0.015, img.shape).astype(np.float32)
    image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    return image, np.where(mask > 0.5, 255, 0).astype(np.uint8)


def synthetic_polyp_set(
    count: int, height: int, width: int, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``count`` frames and masks of the given size."""
    pairs = [synthetic_polyp(seed, i, height, width) for i in range(count)]
    return [p[0] for p in pairs], [p[1] for p in pairs]
