"""Predict masks for image files with an exported bundle: masks, overlays and a CSV of lesion areas.

For each input image ``NAME.ext`` it writes ``OUT/masks/NAME.png`` (0/255, the image's size),
``OUT/overlays/NAME.png`` (the image with the mask's outline drawn in) and one row of
``OUT/predictions.csv``: the image's size, the predicted lesion area (pixels and fraction of the image),
the number of separate lesions, the highest lesion probability, and the time taken (model and total).
Every file is written atomically. An image that cannot be read does not stop the others; all such
images are listed in one error at the end.

Nothing a user already has is ever replaced: without ``overwrite`` a call refuses (before writing anything)
when any file it would write exists already, when two inputs would write the same mask (same file name in
two folders), and always when the output folder is, lies inside, or contains an input folder (predicting
into a data set's root would otherwise replace its ground-truth ``masks/``). Without ``out`` a new folder
``predictions-<date>-<time>[-N]`` is made, so two batches never share one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from elasticnet.data.imageio import IMAGE_SUFFIXES, read_image
from elasticnet.errors import UserError, listing
from elasticnet.files import atomic_write_bytes, nested
from elasticnet.reporting import write_csv
from elasticnet.site.model import SiteModel

COLUMNS = [
    "name",
    "file",
    "height",
    "width",
    "lesion_pixels",
    "lesion_fraction",
    "lesions",
    "max_probability",
    "model_ms",
    "total_ms",
]
OUTLINE_BGR = (0, 255, 0)


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files among ``inputs`` (files, or folders searched one level deep), in a stable order."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            # every entry named like an image: a FIFO or a folder called x.png is listed as a problem later
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UserError(f"folder {item} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif item.exists():  # a file, or something that is not one (listed as a problem when read)
            files.append(item)
        else:
            raise UserError(f"input {item} does not exist; pass image files or folders")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems and stems[f.stem] != f:
            raise UserError(
                f"two inputs would both write {f.stem}.png: {stems[f.stem]} and {f}; predict them "
                "into separate --out folders"
            )
        stems[f.stem] = f
    return list(dict.fromkeys(files))


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BGR copy of ``image`` with the outline of ``mask`` drawn in green."""
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    thickness = max(1, round(max(image.shape[:2]) / 300))
    return cv2.drawContours(bgr, contours, -1, OUTLINE_BGR, thickness)


def png_bytes(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise UserError("could not encode a PNG")
    return data.tobytes()


def predict_image(model: SiteModel, image: np.ndarray) -> tuple[np.ndarray, dict]:
    """(mask, statistics) for one decoded image."""
    start = time.perf_counter()
    framed = model.frame(image)
    t0 = time.perf_counter()
    logits = model.logits(framed.x)[0, 0]
    model_s = time.perf_counter() - t0
    h, w = framed.size
    prob = model.unframe(framed, logits)
    mask = np.where(prob > model.threshold, 255, 0).astype(np.uint8)
    pixels = int(np.count_nonzero(mask))
    lesions = cv2.connectedComponents(mask)[0] - 1
    stats = {
        "height": h,
        "width": w,
        "lesion_pixels": pixels,
        "lesion_fraction": round(pixels / (h * w), 6),
        "lesions": int(lesions),
        "max_probability": round(float(prob.max()), 4),
        "model_ms": round(model_s * 1000, 2),
        "prepare_ms": round((t0 - start) * 1000, 2),
    }
    return mask, stats


def new_output_folder(parent: Path = Path(".")) -> Path:
    """A folder ``predictions-<date>-<time>[-N]`` that did not exist (made here, so a parallel call gets another)."""
    stem = "predictions-" + time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise UserError(f"could not make a new output folder {stem}-N in {parent.resolve()}; pass --out")


def check_outputs(inputs: Sequence[str | Path], files: list[Path], out: Path, overlays: bool, overwrite: bool) -> None:
    """Refuse, before anything is written, a call that would replace a user's file (see the module doc)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"the output {out} is a file, not a folder; choose another --out (a folder, new or not)")
    resolved = out.resolve()
    folders = {Path(i).resolve() if Path(i).is_dir() else Path(i).resolve().parent for i in inputs}
    clash = sorted(str(f) for f in folders if nested(resolved, f))
    if clash:
        raise UserError(
            f"the output folder {out} is, contains or lies inside the input folder {clash[0]}: predicting "
            "there could replace the data's own files (e.g. its ground-truth masks/); choose an --out "
            "outside the inputs"
        )
    stems = [f.stem for f in files]  # unique: collect_inputs refuses two inputs with one name
    if overwrite:
        return
    planned = [out / "predictions.csv"] + [
        out / kind / f"{stem}.png" for stem in stems for kind in (("masks", "overlays") if overlays else ("masks",))
    ]
    existing = [p for p in planned if p.exists() or p.is_symlink()]
    if existing:
        raise UserError(
            f"{len(existing)} file(s) this call would write exist already in {out} (e.g. {existing[0]}); "
            "choose another --out (or leave it out for a new folder), or pass --overwrite to replace them"
        )


def predict_files(
    bundle: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path | None,
    threads: int = 0,
    overlays: bool = True,
    echo: Callable[[str], None] = print,
    overwrite: bool = False,
    chosen: Callable[[Path], None] | None = None,
) -> list[dict]:
    """Predict every image of ``inputs`` with ``bundle``; write masks, overlays and ``predictions.csv`` into
    ``out`` (None: a new ``predictions-<date>-<time>`` folder). Refuses to replace existing files unless
    ``overwrite``."""
    model = SiteModel(bundle, threads)
    files = collect_inputs(inputs)
    if out is None or str(out) == "":
        # the folder is new and empty: only where it lies and name clashes can refuse the call
        check_outputs(inputs, files, Path(time.strftime("predictions-%Y%m%d-%H%M%S")), overlays, overwrite=True)
        out = new_output_folder()
    out = Path(out)
    check_outputs(inputs, files, out, overlays, overwrite)
    if chosen is not None:
        chosen(out)
    rows, problems = [], []
    for path in _progress(files, echo):
        start = time.perf_counter()
        try:
            image = read_image(path)
        except (ValueError, OSError) as e:
            problems.append(f"{path}: {e}")
            continue
        try:
            mask, stats = predict_image(model, image)
        except UserError as e:
            problems.append(f"{path}: {e}")
            continue
        atomic_write_bytes(out / "masks" / f"{path.stem}.png", png_bytes(mask))
        if overlays:
            atomic_write_bytes(out / "overlays" / f"{path.stem}.png", png_bytes(overlay(image, mask)))
        stats.pop("prepare_ms")
        rows.append(
            {"name": path.stem, "file": str(path), **stats, "total_ms": round((time.perf_counter() - start) * 1000, 2)}
        )
    if rows:
        write_rows(rows, out / "predictions.csv")
    if problems:
        raise UserError(
            f"{len(problems)} of {len(files)} image(s) could not be predicted"
            f"{f' (the other {len(rows)} were written to {out}/)' if rows else ''}:\n{listing(problems)}"
        )
    return rows


def write_rows(rows: list[dict], path: Path) -> None:
    write_csv(rows, path, COLUMNS)


def _progress(files: list[Path], echo: Callable[[str], None]) -> Iterable[Path]:
    """Yield ``files``, reporting progress on a terminal (a line per 10 % otherwise)."""
    n = len(files)
    tty = sys.stderr.isatty()
    step = max(1, n // 10)
    for i, f in enumerate(files, 1):
        yield f
        if tty:
            print(f"\rpredicted {i}/{n}", end="" if i < n else "\n", file=sys.stderr, flush=True)
        elif i % step == 0 or i == n:
            echo(f"predicted {i}/{n}")
