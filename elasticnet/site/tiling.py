"""Where the windows of sliding-window inference go, and how overlapping windows are blended.

Shared by the torch evaluation (:mod:`elasticnet.sliding_window`) and the torch-free site runtime, so
both predict a large image the same way: windows of the training patch size, ``overlap`` of a window
between neighbours, the last window flush with the border, and a separable tent weight that is never
zero, so overlapping windows fade into each other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def starts(length: int, tile: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, plus one flush with the end."""
    if tile >= length:
        return [0]
    return [*list(range(0, length - tile, stride)), length - tile]


def windows(height: int, width: int, tile: tuple[int, int], overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """(top, left, tile height, tile width) of every window covering a ``height`` x ``width`` image."""
    th, tw = min(tile[0], height), min(tile[1], width)
    sh, sw = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    return [(top, left, th, tw) for top in starts(height, th, sh) for left in starts(width, tw, sw)]


def tent(h: int, w: int) -> np.ndarray:
    """The (h, w) blending weight: rises linearly over the outer quarter of each side, never zero."""

    def ramp(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float32)
        return np.minimum(np.minimum(x + 1, n - x), n / 4) / (n / 4)

    return (ramp(h)[:, None] * ramp(w)[None, :]).astype(np.float32)


def sliding_window_np(
    predict: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: tuple[int, int], overlap: float = 0.25
) -> np.ndarray:
    """Logits of ``image`` (N, C, H, W) from ``predict`` applied window by window; memory: one window plus
    two image-sized float maps. A window covering the whole image is one plain call."""
    n, _, h, w = image.shape
    boxes = windows(h, w, tile, overlap)
    if len(boxes) == 1 and boxes[0][2:] == (h, w):
        return predict(image)
    weight = tent(*boxes[0][2:])
    out, norm = None, np.zeros((h, w), np.float32)
    for top, left, th, tw in boxes:
        logits = predict(np.ascontiguousarray(image[:, :, top : top + th, left : left + tw]))
        if out is None:
            out = np.zeros((n, logits.shape[1], h, w), np.float32)
        out[:, :, top : top + th, left : left + tw] += logits * weight
        norm[top : top + th, left : left + tw] += weight
    return out / norm
