"""CVC-ClinicDB (Bernal et al., 2015): 612 colonoscopy frames from 29 video sequences, with polyp masks.

Two layouts are read:

- the official distribution: ``Original/<id>.tif`` (RGB TIFF with a photometric quirk, see
  :mod:`elasticnet.data.imageio`) and ``Ground Truth/<id>.tif`` (grey; some files hold faint values
  between 1 and 254, removed by binarising at > 127);
- the PNG layout: ``images/<id>.png`` and ``masks/<id>.png``.

Frames of one sequence show the same polyp and are near duplicates, so honest splits keep sequences
together. The frame-to-sequence table below is the one printed in the data set's own README.txt, so no
extra file is needed.
"""

from __future__ import annotations

import bisect
from pathlib import Path

from elasticnet.data.folder import paired, require_dir
from elasticnet.data.records import DataProblems, Record
from elasticnet.errors import UserError

# First frame id of sequences 1..29 (from the README.txt shipped with CVC-ClinicDB); the last ends at 612.
SEQUENCE_STARTS = (
    1,
    26,
    51,
    68,
    79,
    104,
    127,
    152,
    178,
    200,
    206,
    228,
    253,
    278,
    298,
    318,
    343,
    364,
    384,
    409,
    429,
    448,
    467,
    479,
    504,
    529,
    547,
    572,
    592,
)
NUM_FRAMES = 612


def sequence_of(frame_id: int) -> int:
    """The video sequence (1..29) of a frame id (1..612)."""
    if not 1 <= frame_id <= NUM_FRAMES:
        raise ValueError(f"CVC-ClinicDB frame ids run from 1 to {NUM_FRAMES}, got {frame_id}")
    return bisect.bisect_right(SEQUENCE_STARTS, frame_id)


def is_official_layout(root: Path) -> bool:
    return (root / "Original").is_dir() and (root / "Ground Truth").is_dir()


def find_cvc(root: str | Path) -> list[Record]:
    root = Path(root)
    if is_official_layout(root):
        images_dir, masks_dir = root / "Original", root / "Ground Truth"
    else:
        require_dir(
            root,
            "images",
            "masks",
            hint="CVC-ClinicDB is read from Original/ + 'Ground Truth/' (official) or images/ + masks/ (PNG)",
        )
        images_dir, masks_dir = root / "images", root / "masks"
    records, bad = [], []
    pairs, problems = paired(root, images_dir, masks_dir)
    for stem, image, mask in pairs:
        if not stem.isdigit() or not 1 <= int(stem) <= NUM_FRAMES:
            bad.append(str(image))
            continue
        records.append(Record(stem, image, f"seq{sequence_of(int(stem)):02d}", mask_path=mask))
    if bad:
        raise UserError(
            f"{root}: CVC-ClinicDB files are named by frame id 1..{NUM_FRAMES}; these are not: "
            + ", ".join(bad[:10])
            + (" ..." if len(bad) > 10 else "")
            + ". Use --dataset folder for other data"
        )
    if problems:
        raise DataProblems(root, problems, records)
    return records
