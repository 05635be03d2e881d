"""What more training gives: the pooled detection table of one recipe at several epoch counts, per sub-net.

    python paper/mammography_epochs.py 20=results/mammography/cpu-val01 40=results/mammography/pilot-e40 \\
        80=results/mammography/pilot-e80 --out results/mammography/epochs

Each argument is ``EPOCHS=FOLDER`` with a ``table.csv`` written by ``paper/mammography_table.py`` for the same
folds and films (the script refuses tables whose pooled rows count different films or masses: those are not
one curve). Writes ``epochs.csv`` (epochs, depth, width and the pooled metrics, one row per table and sub-net)
and ``epochs.png``: sensitivity at 1 false positive per film and lesion Dice against the epochs, one line per
sub-net, with the issue's targets (70 % of masses at <= 1 FP, lesion Dice 0.40) drawn in.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from checkout import ROOT
from runner import MARK, check_out_folder, script_command, write_commands

from elasticnet.errors import UserError, run_script
from elasticnet.reporting import markdown_table, read_csv, save_figure, write_csv

METRICS = ("sensitivity_at_0.5fp", "sensitivity_at_1fp", "sensitivity_at_2fp", "dice_lesion", "fp_rate_normal")
COLUMNS = ("epochs", "depth", "width", "films", "lesions", *METRICS, "table")
TARGETS = {"sensitivity_at_1fp": 0.70, "dice_lesion": 0.40}


def parse_point(text: str) -> tuple[int, Path]:
    """``EPOCHS=FOLDER`` -> (epochs, folder)."""
    epochs, sep, folder = text.partition("=")
    if not sep or not epochs.strip().isdigit() or int(epochs) < 1:
        raise UserError(f"{text!r}: give EPOCHS=FOLDER, e.g. 40=results/mammography/pilot-e40")
    return int(epochs), Path(folder)


def pooled_rows(epochs: int, folder: Path) -> list[dict]:
    """The ``pooled`` rows of ``folder/table.csv``, tagged with ``epochs``."""
    path = folder / "table.csv"
    if not path.is_file():
        raise UserError(f"{path} does not exist; give a folder written by paper/mammography_table.py")
    rows = [r for r in read_csv(path) if r.get("fold") == "pooled"]
    missing = [c for c in ("depth", "width", "films", "lesions", *METRICS) if rows and c not in rows[0]]
    if missing:
        raise UserError(f"{path} lacks the columns {missing}; write it again with paper/mammography_table.py")
    if not rows:
        raise UserError(f"{path} has no pooled rows; it was not written by paper/mammography_table.py")
    return [
        {
            "epochs": epochs,
            "depth": int(r["depth"]),
            "width": float(r["width"]),
            "films": int(r["films"]),
            "lesions": int(r["lesions"]),
            **{m: float(r[m]) if r[m] != "" else float("nan") for m in METRICS},
            "table": folder.name,
        }
        for r in rows
    ]


def curve_rows(points: list[tuple[int, Path]]) -> list[dict]:
    """Every table's pooled rows, ordered by sub-net and epochs; the tables must pool the same films."""
    if len({e for e, _ in points}) != len(points):
        raise UserError("each epoch count may appear once")
    rows = [r for e, folder in points for r in pooled_rows(e, folder)]
    counts = {(r["films"], r["lesions"]) for r in rows}
    if len(counts) > 1:
        raise UserError(
            f"the tables pool different films (films, masses: {sorted(counts)}); "
            "give tables of the same folds and the same --evaluate-on"
        )
    return sorted(rows, key=lambda r: (r["depth"], r["width"], r["epochs"]))


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    shapes = sorted({(r["depth"], r["width"]) for r in rows})
    for ax, metric, label in zip(
        axes, TARGETS, ("masses detected at <= 1 FP per film", "lesion Dice (films with a mass)"), strict=True
    ):
        for shape in shapes:
            mine = [r for r in rows if (r["depth"], r["width"]) == shape]
            ax.plot(
                [r["epochs"] for r in mine], [r[metric] for r in mine], marker="o", label=f"({shape[0]},{shape[1]:g})"
            )
        ax.axhline(TARGETS[metric], color="grey", ls="--", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r["epochs"] for r in rows}), [str(e) for e in sorted({r["epochs"] for r in rows})])
        ax.set_ylim(0, 1)
        ax.set_xlabel("epochs")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7, title="(depth, width)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("points", nargs="+", help="EPOCHS=FOLDER, a folder written by paper/mammography_table.py")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "mammography" / "epochs")
    args = p.parse_args(argv)
    check_out_folder(args.out)
    rows = curve_rows([parse_point(t) for t in args.points])
    args.out.mkdir(parents=True, exist_ok=True)
    write_commands(args.out, [script_command("mammography_epochs.py", sys.argv[1:] if argv is None else argv)])
    write_csv(rows, args.out / "epochs.csv", COLUMNS)
    films, lesions = rows[0]["films"], rows[0]["lesions"]
    plot(rows, args.out / "epochs.png", f"mini-MIAS masses, pooled: {films} films, {lesions} masses; dashed: target")
    print(markdown_table(rows, COLUMNS))
    print(f"wrote {args.out}/ (epochs.csv, epochs.png, {MARK})")


if __name__ == "__main__":
    run_script(main)
