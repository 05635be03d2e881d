"""Reading an ``images/`` + ``masks/`` folder pair, matched by file stem.

Everything is checked before anything is trained on, and *all* problems are reported at once, each naming
its file, so a broken data set never crashes a training run half-way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from elasticnet.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm")


@dataclass(frozen=True)
class Sample:
    name: str
    image_path: Path
    mask_path: Path


def _files_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def find_samples(root: str | Path) -> list[Sample]:
    """Pair ``root/images/<stem>.*`` with ``root/masks/<stem>.*``; raise one error listing every problem."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist; pass --data synthetic or a folder with images/ and masks/")
    images_dir, masks_dir = root / "images", root / "masks"
    missing = [str(d) for d in (images_dir, masks_dir) if not d.is_dir()]
    if missing:
        raise UserError(f"{root} must hold images/ and masks/ sub-folders; missing: {', '.join(missing)}")
    images, masks = _files_by_stem(images_dir), _files_by_stem(masks_dir)
    problems = [f"{images[s]}: no mask {masks_dir}/{s}.*" for s in sorted(images.keys() - masks.keys())]
    problems += [f"{masks[s]}: no image {images_dir}/{s}.*" for s in sorted(masks.keys() - images.keys())]
    if not images:
        problems.append(f"{images_dir}: no images (looked for {', '.join(IMAGE_SUFFIXES)})")
    if problems:
        raise UserError(_problem_report(root, problems))
    return [Sample(s, images[s], masks[s]) for s in sorted(images.keys() & masks.keys(), key=_natural_key)]


def _natural_key(stem: str) -> tuple:
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _problem_report(root: Path, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    return f"data set {root} has {len(problems)} problem(s); fix or remove these files:\n  {shown}{more}"


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) or grey (H, W); raises ValueError on an unreadable file."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ValueError("unreadable or truncated image")
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3:
        if image.shape[2] == 4:
            image = image[..., :3]
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def load_samples(samples: list[Sample], in_channels: int, size: tuple[int, int], root: Path | str = "") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode, check, binarise (> 127) and resize every sample to ``size`` (H, W); report all problems at once."""
    images, masks, problems = [], [], []
    for s in samples:
        try:
            image = read_image(s.image_path)
        except ValueError as e:
            problems.append(f"{s.image_path}: {e}")
            continue
        try:
            mask = read_image(s.mask_path)
        except ValueError as e:
            problems.append(f"{s.mask_path}: {e}")
            continue
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        if image.shape[:2] != mask.shape[:2]:
            problems.append(f"{s.image_path}: image is {image.shape[1]}x{image.shape[0]} but its mask {s.mask_path.name} "
                            f"is {mask.shape[1]}x{mask.shape[0]} (width x height)")
            continue
        channels = 1 if image.ndim == 2 else image.shape[2]
        if channels != in_channels:
            if in_channels == 3 and channels == 1:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
            elif in_channels == 1 and channels == 3:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            else:
                problems.append(f"{s.image_path}: has {channels} channels, the model expects {in_channels}")
                continue
        images.append(resize_image(image, size))
        masks.append(resize_mask(mask, size))
    if problems:
        raise UserError(_problem_report(Path(root), problems))
    return images, masks


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    mask = np.where(mask > 127, 255, 0).astype(np.uint8)
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
