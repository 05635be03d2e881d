"""Writing tables (CSV, Markdown) and figures (PNG) that a person reads."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from elasticnet.files import atomic_write, atomic_write_text


def write_csv(rows: Sequence[dict], path: Path, columns: Sequence[str] | None = None) -> Path:
    """``rows`` as CSV (atomically); the columns are ``columns`` or the first row's keys."""
    buf = io.StringIO()
    if rows or columns:
        writer = csv.DictWriter(buf, fieldnames=list(columns or rows[0].keys()))
        writer.writeheader()
        # a value that is not a number (no lesion to measure) is a blank cell, not "nan"
        writer.writerows({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows)
    return atomic_write_text(path, buf.getvalue())


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV file as dicts of strings (parse them where their meaning is known)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(fig)
    return Path(path)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def text_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A fixed-width table for the terminal."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    out = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _fmt(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ""  # e.g. lesion Dice of a split without lesions
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e4 or value == int(value) else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def plot_training_curve(log: Sequence[dict], path: Path) -> Path:
    """Training loss and validation Dice (largest and smallest sub-net) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in log]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in log], marker="o")
    ax1.set(xlabel="epoch", ylabel="training loss (BCE + soft Dice)", title="loss")
    ax2.plot(epochs, [r["val_dice_largest"] for r in log], marker="o", label="largest sub-net")
    ax2.plot(epochs, [r["val_dice_smallest"] for r in log], marker="s", label="smallest sub-net")
    ax2.set(xlabel="epoch", ylabel="validation Dice (BN re-estimated, 4 batches)", title="validation", ylim=(0, 1))
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
