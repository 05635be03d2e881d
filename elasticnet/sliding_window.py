"""Sliding-window inference in torch: predict a large image as overlapping tiles blended with smooth weights.

The window layout and weights come from :mod:`elasticnet.site.tiling` (shared with the torch-free site
runtime). Memory is bounded by one tile (times the batch of tiles), whatever the image size. Tiles whose
windows cover the whole image reduce to one plain forward pass, so the result then equals whole-image
inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from elasticnet.site.tiling import tent, windows


@torch.no_grad()
def sliding_window(
    predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, tile: tuple[int, int], overlap: float = 0.25
) -> torch.Tensor:
    """Logits of ``images`` (N, C, H, W) from ``predict`` applied to ``tile``-sized windows."""
    n, _, h, w = images.shape
    boxes = windows(h, w, tile, overlap)
    if len(boxes) == 1 and boxes[0][2:] == (h, w):
        return predict(images)
    weight = torch.from_numpy(tent(*boxes[0][2:])).to(images.device)[None, None]
    out = None
    norm = torch.zeros(1, 1, h, w, device=images.device)
    for top, left, th, tw in boxes:
        logits = predict(images[:, :, top : top + th, left : left + tw]).float()
        if out is None:
            out = torch.zeros(n, logits.shape[1], h, w, device=images.device)
        out[:, :, top : top + th, left : left + tw] += logits * weight
        norm[:, :, top : top + th, left : left + tw] += weight
    return out / norm
