"""Reading DICOM images (mammograms from a PACS, CBIS-DDSM, INbreast) as 8-bit arrays, torch-free.

What a radiologist's viewer does, in the order the standard defines it:

1. the header is read first (no pixel data) and checked: one frame, a declared size within
   :func:`elasticnet.data.imageio.max_pixels`, a transfer syntax this install can decode (compressed syntaxes
   need their decoder plug-in: the error names the syntax and what to install or convert);
2. the modality LUT (Rescale Slope / Intercept) maps stored values to modality values;
3. the VOI transform from the file maps them to display values: the VOI LUT Sequence when present, else the
   first Window Center / Width (linear, or the function VOI LUT Function names); without either the film's
   own value range is used;
4. MONOCHROME1 (high values dark) is inverted, so lesions are bright in every film;
5. the display range is scaled to 0..255.

Colour DICOM (RGB, YBR) is returned as RGB.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom(path: Path) -> bool:
    """A DICOM file by suffix, or by the "DICM" marker after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@contextmanager
def _quiet() -> Iterator[None]:
    """pydicom's own warnings about broken files stay off the terminal: the caller reports the file by name."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise ValueError(
            "is a DICOM file, and reading DICOM needs pydicom: pip install 'elasticnet[site]' (or pydicom)"
        ) from None
    return pydicom


def read_header(path: Path):
    """The dataset without pixel data; ValueError with a short reason when it is not readable DICOM."""
    pydicom = _pydicom()
    try:
        with _quiet():
            return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as e:  # pydicom raises InvalidDicomError, struct errors, ... on broken files
        raise ValueError(f"is not a readable DICOM file ({type(e).__name__}: {str(e)[:80]})") from None


def declared_size(path: Path) -> tuple[int, int] | None:
    """(rows, columns) from the header; None if the header does not say."""
    ds = read_header(path)
    rows, cols = ds.get("Rows"), ds.get("Columns")
    return (int(rows), int(cols)) if rows and cols else None


def read_dicom(path: Path) -> np.ndarray:
    """Grey (H, W) or RGB (H, W, 3) uint8 display pixels of a single-frame DICOM image (see the module doc)."""
    pydicom = _pydicom()
    header = read_header(path)
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ValueError(f"holds {frames} frames (e.g. tomosynthesis); export one 2-D view (a single-frame file)")
    if "PixelData" not in header and not _has_pixel_data(path):
        raise ValueError("holds no image (no Pixel Data): a DICOM report or structured document, not a film")
    syntax = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
    try:
        with _quiet():
            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array
    except Exception as e:
        name = getattr(syntax, "name", str(syntax)) if syntax is not None else "unknown"
        if syntax is not None and getattr(syntax, "is_compressed", False):
            raise ValueError(
                f"uses the compressed transfer syntax {name}, which this install cannot decode "
                f"({type(e).__name__}); install its pydicom decoder plug-in (e.g. pylibjpeg with "
                "pylibjpeg-openjpeg / pylibjpeg-libjpeg) or convert the file to an uncompressed syntax "
                "(e.g. dcmdjpeg, gdcmconv --raw)"
            ) from None
        raise ValueError(f"pixel data cannot be decoded ({type(e).__name__}: {str(e)[:80]})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        return _scale(pixels.astype(np.float64), 0.0, float(2 ** int(ds.get("BitsStored", 8)) - 1))
    if pixels.ndim != 2:
        raise ValueError(f"has pixel data of shape {pixels.shape}; expected one grey or RGB image")
    values, lo, hi = _display_values(ds, pixels)
    image = _scale(values, lo, hi)
    return 255 - image if photometric == "MONOCHROME1" else image


def _has_pixel_data(path: Path) -> bool:
    pydicom = _pydicom()
    try:
        with _quiet():
            return "PixelData" in pydicom.dcmread(path, specific_tags=["PixelData"])
    except Exception:
        return True


def _display_values(ds, pixels: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(values, lowest, highest display value): modality LUT, then the file's VOI transform."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float64)
    if "VOILUTSequence" in ds:
        out = np.asarray(apply_voi_lut(values, ds), dtype=np.float64)
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return out, 0.0, float(2**bits - 1)
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is not None and width is not None and width >= 1:
        function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
        if function == "SIGMOID":
            out = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
        elif function == "LINEAR_EXACT":
            out = (values - (center - width / 2)) / width
        else:  # LINEAR (PS3.3 C.11.2.1.2)
            out = (values - (center - 0.5)) / (width - 1) + 0.5
        return np.clip(out, 0.0, 1.0), 0.0, 1.0
    return values, float(values.min()), float(values.max())


def _first(value) -> float | None:
    """The first of a multi-valued window attribute (several windows may be given)."""
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _scale(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (values - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(values)
    return np.clip(scaled, 0, 255).round().astype(np.uint8)
