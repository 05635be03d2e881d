"""The region of interest of an image: the bounding box of its largest bright region.

On a mammogram that is the breast. Most of a film is black background (with bright labels and markers in it),
so resizing the whole film to the working size spends most pixels on nothing: on mini-MIAS the breast's box is
a median 977 x 530 of the 1024 x 1024 film. Cropping to the box before resizing to the working size (aspect
not kept) about doubles the resolution across the breast at the same cost. Training, evaluation and a site's
``predict`` all crop the same way (torch-free: numpy and OpenCV), and a site's mask is pasted back into the
full film.

The box is found on a copy at most :data:`WORK_SIDE` pixels on its long side, blurred, thresholded at
``threshold`` x its maximum; the largest connected region's box, widened by ``margin`` x the image's long
side, is mapped back to full resolution. An image without such a region (all dark, or a region smaller than
:data:`MIN_SHARE` of it) keeps its whole extent.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # top, bottom, left, right: rows top:bottom, columns left:right
CROPS = ("none", "foreground")
THRESHOLD = 0.1  # of the (blurred) image's maximum: the skin line of a film, well above its background
MARGIN = 0.02  # of the image's long side, kept around the region
WORK_SIDE = 256
MIN_SHARE = 0.05  # a region smaller than this share of the image is a label or noise, not a breast


def whole(shape: tuple[int, ...]) -> Box:
    return (0, int(shape[0]), 0, int(shape[1]))


def foreground_box(image: np.ndarray, threshold: float = THRESHOLD, margin: float = MARGIN) -> Box:
    """The box (top, bottom, left, right) of the largest region brighter than ``threshold`` x the maximum of a
    uint8 image (H, W) or (H, W, C), widened by ``margin`` x max(H, W); the whole image when there is none."""
    grey = image if image.ndim == 2 else image.mean(axis=2)
    h, w = grey.shape
    if h == 0 or w == 0:
        return whole(grey.shape)
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = cv2.resize(
        grey.astype(np.float32), (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (5, 5), 0)
    top = float(small.max())
    if top <= 0:
        return whole(grey.shape)
    count, _, stats, _ = cv2.connectedComponentsWithStats((small > threshold * top).astype(np.uint8), connectivity=8)
    if count <= 1:
        return whole(grey.shape)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh = (int(v) for v in stats[k, :4])
    if bw * bh < MIN_SHARE * small.shape[0] * small.shape[1]:
        return whole(grey.shape)
    pad = margin * max(h, w)
    sy, sx = h / small.shape[0], w / small.shape[1]
    return (
        max(0, math.floor(y * sy - pad)),
        min(h, math.ceil((y + bh) * sy + pad)),
        max(0, math.floor(x * sx - pad)),
        min(w, math.ceil((x + bw) * sx + pad)),
    )


def region_box(image: np.ndarray, crop: str) -> Box:
    """The box an image is cropped to before resizing: ``crop`` "none" (the whole image) or "foreground"."""
    if crop == "none":
        return whole(image.shape)
    if crop == "foreground":
        return foreground_box(image)
    raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")


def cut(array: np.ndarray, box: Box) -> np.ndarray:
    top, bottom, left, right = box
    return array[top:bottom, left:right]


def paste(part: np.ndarray, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """``part`` (the box's size) placed into zeros of ``shape`` (H, W): a map of a crop, back on the image."""
    full = np.zeros(shape[:2], part.dtype)
    top, bottom, left, right = box
    full[top:bottom, left:right] = part
    return full
