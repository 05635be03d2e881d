"""Decoding image files into uint8 arrays, whatever their format's quirks.

- TIFF goes through ``tifffile``: the official CVC-ClinicDB frames declare photometric "min-is-black"
  with 3 samples, which Pillow refuses and OpenCV silently reads as one grey channel; tifffile returns
  the true RGB pixels. Compressed TIFFs that tifffile cannot decode without the optional ``imagecodecs``
  package (LZW, JPEG, as OpenCV and many scanners write them) fall back to OpenCV.
- Everything else (PNG, JPEG, BMP, PGM/PPM) goes through OpenCV.
- 16-bit images (some mammograms) are scaled to 8 bit over their own range.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm")


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) or grey (H, W); raises ValueError with a short reason on a bad file."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        image = _read_tiff(path)
    else:
        image = _read_opencv(path)
        if image is None:
            raise ValueError("unreadable or truncated image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"has {image.shape[2]} channels; images must be grey, RGB or RGBA")
    if image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    return np.ascontiguousarray(image)


def _read_opencv(path: Path) -> np.ndarray | None:
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is not None and image.ndim == 3:
        image = cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB)
    return image


def _read_tiff(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError:  # a site install without tifffile: OpenCV reads most TIFFs
        tifffile = None
    try:
        if tifffile is None:
            raise ImportError("tifffile is not installed")
        return tifffile.imread(path)
    except Exception as e:  # tifffile raises several types for broken files
        reason = f"{type(e).__name__}: {str(e)[:80]}"
    image = _read_opencv(path)  # a codec tifffile lacks (LZW, JPEG without imagecodecs)
    if image is None:
        raise ValueError(f"unreadable or truncated TIFF ({reason})")
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(image)
    return scaled.round().astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey -> RGB or RGB -> grey as a model with ``channels`` input channels needs; ValueError otherwise."""
    have = 1 if image.ndim == 2 else image.shape[2]
    if have == channels:
        return image
    if channels == 3 and have == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if channels == 1 and have == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    raise ValueError(f"has {have} channels, the model expects {channels}")


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` (H, W) with area averaging (as for training)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
