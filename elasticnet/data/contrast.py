"""Local contrast equalisation of an image before it is resized (CLAHE), for mammograms.

A mass and dense fibroglandular tissue have about the same brightness on a film; what tells them apart is local
structure (a mass's edge, tissue's streaks), which a global mean/std normalisation leaves compressed into a
few grey levels of the dense region. Contrast-limited adaptive histogram equalisation (CLAHE) spreads each
tile's grey levels (8 x 8 tiles, histogram clipped at 2x its mean to limit noise amplification), the usual
pre-processing of mammogram CAD work. Training, evaluation and a site's ``predict`` apply it the same way,
after cropping (``elasticnet.data.roi``) and before resizing; torch-free (OpenCV). Colour images are
equalised on their lightness (CIE L*a*b*), so hue is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

CONTRASTS = ("none", "clahe")
CLIP_LIMIT = 2.0
TILES = (8, 8)


def equalised(image: np.ndarray, contrast: str = "none") -> np.ndarray:
    """``image`` (uint8, (H, W) or (H, W, C)) after ``contrast`` (none: unchanged, the same array)."""
    if contrast == "none":
        return image
    if contrast != "clahe":
        raise ValueError(f"contrast {contrast!r}: one of {', '.join(CONTRASTS)}")
    if image.size == 0:
        return image
    clahe = cv2.createCLAHE(clipLimit=CLIP_LIMIT, tileGridSize=TILES)
    if image.ndim == 2:
        return clahe.apply(np.ascontiguousarray(image))
    if image.shape[2] == 1:
        return clahe.apply(np.ascontiguousarray(image[..., 0]))[..., None]
    if image.shape[2] == 3:
        lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.stack([clahe.apply(np.ascontiguousarray(image[..., c])) for c in range(image.shape[2])], axis=2)
