"""Sliding-window inference: predict a large image as overlapping tiles blended with smooth weights.

Memory is bounded by one tile (times the batch of tiles), whatever the image size. Tiles whose windows
cover the whole image reduce to one plain forward pass, so the result then equals whole-image inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if tile >= length:
        return [0]
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def _weights(h: int, w: int, device: torch.device) -> torch.Tensor:
    """A separable tent window, never zero, so overlapping tiles fade into each other."""
    def ramp(n: int) -> torch.Tensor:
        x = torch.arange(n, device=device, dtype=torch.float32)
        return torch.minimum(x + 1, n - x).clamp(max=n / 4) / (n / 4)

    return (ramp(h)[:, None] * ramp(w)[None, :])[None, None]


@torch.no_grad()
def sliding_window(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: tuple[int, int],
                   overlap: float = 0.25) -> torch.Tensor:
    """Logits of ``images`` (N, C, H, W) from ``predict`` applied to ``tile``-sized windows."""
    n, _, h, w = images.shape
    th, tw = min(tile[0], h), min(tile[1], w)
    if (th, tw) == (h, w):
        return predict(images)
    sh, sw = max(1, int(th * (1 - overlap))), max(1, int(tw * (1 - overlap)))
    weight = _weights(th, tw, images.device)
    out = None
    norm = torch.zeros(1, 1, h, w, device=images.device)
    for top in _starts(h, th, sh):
        for left in _starts(w, tw, sw):
            logits = predict(images[:, :, top : top + th, left : left + tw]).float()
            if out is None:
                out = torch.zeros(n, logits.shape[1], h, w, device=images.device)
            out[:, :, top : top + th, left : left + tw] += logits * weight
            norm[:, :, top : top + th, left : left + tw] += weight
    return out / norm
