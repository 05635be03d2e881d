"""What every reader produces: one :class:`Record` per image, and the checked, decoded arrays.

A record names its image, where its mask comes from (a file, or circles drawn from an annotation
table), and its *group*: the unit that a split keeps together (a video sequence, a patient).
Decoding checks every record and reports all problems at once, each naming its file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from elasticnet.data.contrast import equalised
from elasticnet.data.imageio import read_image, resize_image, to_channels
from elasticnet.data.roi import cut, region_box
from elasticnet.errors import UserError, listing


@dataclass(frozen=True)
class Record:
    name: str
    image_path: Path
    group: str
    mask_path: Path | None = None
    # Circles (column, row counted from the *bottom*, radius) in pixels, drawn filled as the mask.
    circles: tuple[tuple[float, float, float], ...] = ()
    # A lesion the annotation names but does not locate: the mask cannot mark it, so the image is neither a
    # lesion image nor a normal one. It keeps its place in the split (folds stay as they are) and is left out
    # of training and evaluation.
    unlocated: bool = False


def problem_report(root: Path | str, problems: Sequence[str]) -> str:
    return f"data set {root} has {len(problems)} problem(s); fix or remove these files:\n{listing(list(problems))}"


class DataProblems(UserError):
    """Problems found while listing a data set (unpaired files, ...), with the records that are fine.

    The loader decodes those records too and reports every problem of every kind in one message, so a user
    fixes the folder once, not once per kind of problem.
    """

    def __init__(self, root: Path | str, problems: Sequence[str], records: Sequence[Record] = ()):
        self.root, self.problems, self.records = root, list(problems), list(records)
        super().__init__(problem_report(root, self.problems))


def draw_circles(shape: tuple[int, int], circles: Sequence[tuple[float, float, float]]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    limit = 4 * max(shape)  # a circle this far out cannot mark this film (and would overflow OpenCV's ints)
    for col, row_from_bottom, radius in circles:
        if not all(abs(v) <= limit for v in (col, row_from_bottom, radius)):
            raise ValueError(
                f"annotation circle (x {col:g}, y {row_from_bottom:g}, radius {radius:g}) lies far outside "
                f"the {shape[1]}x{shape[0]} film; check Info.txt"
            )
        centre = (round(col), round(shape[0] - 1 - row_from_bottom))
        cv2.circle(mask, centre, round(radius), 255, thickness=-1)
    return mask


def decode(record: Record, in_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(image with ``in_channels`` channels, 0/255 mask); ValueError('<file>: <reason>') on a problem."""
    try:
        image = read_image(record.image_path)
    except ValueError as e:
        raise ValueError(f"{record.image_path}: {e}") from None
    if record.mask_path is not None:
        try:
            mask = read_image(record.mask_path, mask=True)
        except ValueError as e:
            raise ValueError(f"{record.mask_path}: {e}") from None
        if mask.ndim == 3:
            mask = mask.max(axis=2)
        if image.shape[:2] != mask.shape[:2]:
            raise ValueError(
                f"{record.image_path}: image is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{record.mask_path.name} is {mask.shape[1]}x{mask.shape[0]} (width x height)"
            )
        # 0/255 (or 0/65535) masks, and masks saved as 0/1 (maximum 1): those would read as empty at 127
        mask = np.where(mask > (0 if mask.max() <= 1 else 127), 255, 0).astype(np.uint8)
    else:
        mask = draw_circles(image.shape[:2], record.circles)
    try:
        image = to_channels(image, in_channels)
    except ValueError as e:
        raise ValueError(f"{record.image_path}: {e}") from None
    return image, mask


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if mask.shape[:2] == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def prepared(image: np.ndarray, mask: np.ndarray, size: tuple[int, int], crop: str = "none", contrast: str = "none"):
    """A decoded pair cropped to its region of interest (``crop``, :mod:`elasticnet.data.roi`; found on the
    image), its contrast equalised (``contrast``, :mod:`elasticnet.data.contrast`) and resized to ``size``
    (H, W)."""
    box = region_box(image, crop)
    return resize_image(equalised(cut(image, box), contrast), size), resize_mask(cut(mask, box), size)


def check_records(records: Sequence[Record], in_channels: int, root: Path | str, known: Sequence[str] = ()) -> None:
    """Decode every record once, raising one error that lists every problem, ``known`` ones (from listing the
    folder) first; nothing is kept."""
    problems = list(known)
    for record in records:
        try:
            decode(record, in_channels)
        except ValueError as e:
            problems.append(str(e))
    if problems:
        raise UserError(problem_report(root, problems))


def load_records(
    records: Sequence[Record],
    in_channels: int,
    size: tuple[int, int],
    root: Path | str = "",
    known: Sequence[str] = (),
    crop: str = "none",
    contrast: str = "none",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Decode, check, crop (``crop``) and resize every record to ``size`` (H, W); report all problems at once,
    ``known`` ones (from listing the folder) first."""
    images, masks, problems = [], [], list(known)
    for record in records:
        try:
            image, mask = decode(record, in_channels)
        except ValueError as e:
            problems.append(str(e))
            continue
        image, mask = prepared(image, mask, size, crop, contrast)
        images.append(image)
        masks.append(mask)
    if problems:
        raise UserError(problem_report(root, problems))
    return images, masks


class LazyArrays(Sequence):
    """Images (or masks) decoded on access, for data sets too large to hold in memory."""

    def __init__(
        self,
        records: Sequence[Record],
        in_channels: int,
        size: tuple[int, int],
        part: int,
        crop: str = "none",
        contrast: str = "none",
    ):
        self.records, self.in_channels, self.size, self.part = list(records), in_channels, size, part
        self.crop, self.contrast = crop, contrast

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):  # type: ignore[override]
        try:
            pair = decode(self.records[i], self.in_channels)
        except ValueError as e:  # a file that went bad after the start-up check (disk error, ...)
            raise UserError(f"reading a training file failed: {e}") from None
        return prepared(*pair, self.size, self.crop, self.contrast)[self.part]
