"""mini-MIAS (Suckling et al., 1994): 322 mammograms (1024 x 1024) with circle annotations in Info.txt.

Reads the original distribution (``mdbNNN.pgm`` beside ``Info.txt``) or a PNG conversion
(``images/mdbNNN.png`` with ``Info.txt`` beside ``images/``). Masks are drawn from ``Info.txt`` as filled
circles: its x, y give the centre with y counted from the *bottom* of the image, and the radius encloses
the abnormality. ``classes="mass"`` draws the mass classes (CIRC, SPIC, MISC) only; ``"all"`` every
abnormality with coordinates. Films without a drawn lesion get empty masks. A film with a lesion of the
wanted classes that Info.txt does not locate (mdb059's mass; the calcifications of mdb216, mdb233 and
mdb245) is marked ``unlocated``: its mask could not show that lesion, so it is left out of training and
evaluation (it keeps its place in the split). The left and right films of one woman (ids 2k-1 and 2k) form
one group, so splits never separate them.

These are region annotations, not outlines: Dice against them measures localisation more than boundary
accuracy.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from elasticnet.data.folder import files_by_stem
from elasticnet.data.records import Record
from elasticnet.errors import UserError

MASS_CLASSES = frozenset({"CIRC", "SPIC", "MISC"})
ALL_CLASSES = frozenset({"CALC", "CIRC", "SPIC", "MISC", "ARCH", "ASYM"})
_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+(CALC|CIRC|SPIC|MISC|ARCH|ASYM|NORM)\b(.*)$")


@dataclass(frozen=True)
class Annotation:
    refnum: str
    tissue: str
    cls: str
    severity: str | None
    x: float | None
    y_from_bottom: float | None
    radius: float | None


def parse_info(path: Path) -> list[Annotation]:
    """Every film row of ``Info.txt`` (one per abnormality; NORM rows have no coordinates)."""
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        m = _ROW.match(line.strip())
        if not m:
            continue
        refnum, tissue, cls, rest = m.groups()
        fields = rest.split()
        severity = fields[0] if fields and fields[0] in ("B", "M") else None
        numbers = [float(f) for f in fields[1:4] if re.fullmatch(r"\d+(\.\d+)?", f)]
        x, y, r = (numbers + [None] * 3)[:3] if len(numbers) == 3 else (None, None, None)
        rows.append(Annotation(refnum, tissue, cls, severity, x, y, r))
    if not rows:
        raise UserError(f"{path} holds no mini-MIAS rows (lines like 'mdb001 G CIRC B 535 425 197')")
    return rows


def patient_of(refnum: str) -> str:
    """Films 2k-1 and 2k belong to one woman."""
    return f"patient{(int(refnum[3:]) + 1) // 2:03d}"


def find_mias(root: str | Path, classes: str = "mass") -> list[Record]:
    root = Path(root)
    info = root / "Info.txt"
    if not info.is_file():
        raise UserError(f"{root} is not a mini-MIAS folder: Info.txt is missing")
    if classes not in ("mass", "all"):
        raise UserError(f"mias_classes must be 'mass' or 'all', got {classes!r}")
    wanted = MASS_CLASSES if classes == "mass" else ALL_CLASSES
    image_dir = root / "images" if (root / "images").is_dir() else root
    files = {stem: p for stem, p in files_by_stem(image_dir).items() if stem.startswith("mdb")}
    circles: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    refnums, unlocated = [], set()
    for a in parse_info(info):
        if a.refnum not in refnums:
            refnums.append(a.refnum)
        if a.cls in wanted:
            if a.x is None:
                unlocated.add(a.refnum)
            else:
                circles[a.refnum].append((a.x, a.y_from_bottom, a.radius))
    missing = [r for r in refnums if r not in files]
    if missing:
        raise UserError(
            f"{root}: Info.txt lists {len(missing)} film(s) with no image file in {image_dir}: "
            + ", ".join(missing[:10])
            + (" ..." if len(missing) > 10 else "")
        )
    return [
        Record(r, files[r], patient_of(r), circles=tuple(circles.get(r, ())), unlocated=r in unlocated) for r in refnums
    ]
