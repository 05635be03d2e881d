"""Decoding image files into uint8 arrays, whatever their format's quirks.

- TIFF goes through ``tifffile``: the official CVC-ClinicDB frames declare photometric "min-is-black"
  with 3 samples, which Pillow refuses and OpenCV silently reads as one grey channel; tifffile returns
  the true RGB pixels. Compressed TIFFs that tifffile cannot decode without the optional ``imagecodecs``
  package (LZW, JPEG, as OpenCV and many scanners write them) fall back to OpenCV.
- Everything else (PNG, JPEG, BMP, PGM/PPM) goes through OpenCV.
- 16-bit images (some mammograms) are scaled to 8 bit over their own range.
- DICOM (``.dcm``, or any file with the DICM marker) goes through pydicom with the file's own modality and
  VOI transforms (:mod:`elasticnet.data.dicom`).

Files that arrive at a site are untrusted: a 200-byte PNG may declare 100000 x 100000 pixels, a 10 MB TIFF
may decode to 10 GB. The size each file declares in its header is checked before anything is decoded,
against :data:`MAX_PIXELS` (100 M pixels by default, 6x a 4096x3328 full-field mammogram; the environment
variable ``ELASTICNET_MAX_PIXELS`` changes it). Only regular files are opened (a FIFO would block).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from elasticnet.data import dicom
from elasticnet.data.dicom import DICOM_SUFFIXES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", *DICOM_SUFFIXES)
MAX_PIXELS = 100_000_000


def max_pixels() -> int:
    try:
        return int(os.environ.get("ELASTICNET_MAX_PIXELS", MAX_PIXELS))
    except ValueError:
        return MAX_PIXELS


def read_image(path: Path, mask: bool = False) -> np.ndarray:
    """RGB uint8 (H, W, 3) or grey (H, W); raises ValueError with a short reason on a bad file. An alpha
    channel is dropped from an image; a mask (``mask=True``) is laid over black instead, so a lesion painted on
    a transparent layer stays the lesion whatever colour the transparent pixels hold."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("not a regular file" if path.exists() else "does not exist")
    try:
        size = declared_size(path)
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or e})") from None
    if size is not None and size[0] * size[1] > max_pixels():
        raise ValueError(
            f"declares {size[1]}x{size[0]} pixels, more than the limit of {max_pixels():,} "
            "(ELASTICNET_MAX_PIXELS raises it)"
        )
    try:
        if dicom.is_dicom(path):
            image = dicom.read_dicom(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            image = _read_tiff(path)
        else:
            image = _read_opencv(path)
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror or e})") from None
    if image is None:
        raise ValueError("unreadable or truncated image")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = _over_black(image) if mask else image[..., :3]
    if image.ndim == 3 and image.shape[2] != 3:
        raise ValueError(f"has {image.shape[2]} channels; images must be grey, RGB or RGBA")
    if image.ndim not in (2, 3) or min(image.shape[:2]) == 0:
        raise ValueError(f"unsupported image shape {image.shape}")
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    return np.ascontiguousarray(image)


def declared_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file's header, without decoding it; None when the format is not recognised."""
    if dicom.is_dicom(path):
        return dicom.declared_size(path)
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
            w, h = struct.unpack(">II", head[16:24])
            return h, w
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(h), abs(w)
        if head[:2] in (b"P2", b"P5", b"P3", b"P6"):
            tokens = b" ".join(line.split(b"#")[0] for line in (head + f.read(200)).splitlines()[:6]).split()
            return (
                (int(tokens[2]), int(tokens[1]))
                if len(tokens) >= 3 and tokens[1].isdigit() and tokens[2].isdigit()
                else None
            )
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(f)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff_size(path)
    return None


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG markers to the first start-of-frame (SOF0-15 but DHT, JPG, DAC)."""
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        if code in (0xD8, 0x01) or 0xD0 <= code <= 0xD7:  # markers without a length
            continue
        length = f.read(2)
        if len(length) < 2:
            return None
        n = struct.unpack(">H", length)[0]
        if 0xC0 <= code <= 0xCF and code not in (0xC4, 0xC8, 0xCC):
            frame = f.read(5)
            return struct.unpack(">HH", frame[1:5]) if len(frame) == 5 else None
        f.seek(n - 2, 1)


def _tiff_size(path: Path) -> tuple[int, int] | None:
    """The largest page's (height, width) from the TIFF tags (nothing is decoded); None without tifffile."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            shapes = [(int(p.imagelength), int(p.imagewidth)) for p in tif.pages]
    except Exception:  # a broken header: the decoder reports it
        return None
    return max(shapes, key=lambda s: s[0] * s[1]) if shapes else None


@contextmanager
def _opencv_quiet() -> Iterator[None]:
    """Keep OpenCV's own warnings (e.g. "PNG input buffer is incomplete") off the terminal while decoding: a
    file that fails is reported by the caller, by name, with the rest of the data set's problems."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None or not hasattr(logging, "getLogLevel"):
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


def _read_opencv(path: Path) -> np.ndarray | None:
    data = np.fromfile(path, dtype=np.uint8)
    try:
        with _opencv_quiet():
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV's own limits and decoder errors
        return None
    if image is not None and image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif image is not None and image.ndim == 3:
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


def _over_black(image: np.ndarray) -> np.ndarray:
    """The colour channels of an RGBA array composited over black (transparent pixels become 0)."""
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else 1.0
    alpha = image[..., 3:].astype(np.float64) / top
    return (image[..., :3] * alpha).round().astype(image.dtype)


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
