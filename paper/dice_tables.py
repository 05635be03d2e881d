"""The tables and figures of ``dice_table.py``, from its results (one row per split, method, sub-net, seed).

Torch-free, and free of the runs: every function takes the results as a :class:`pandas.DataFrame` with the
columns of ``summary.csv`` (split, method, depth, width, seed, dice, ...), so the tables can be remade from a
committed ``summary.csv`` alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

DEPTHS = (3, 4, 5)
WIDTHS = (0.25, 0.5, 0.75, 1.0)
# The originating study (5-level U-Net on CVC-ClinicDB, random split): Dice in %.
STUDY = {3: (66.6, 60.0), 4: (74.3, 77.9), 5: (87.2, 88.13)}
TARGET_POINTS = 1.0  # every sub-net within 1 Dice point of the individual U-Net of its shape
TABLE1_METHODS = ("individual", "uniform", "uniform+calib")
TABLE2_METHODS = (
    "individual",
    "sandwich",
    "sandwich+calib",
    "sandwich+distill",
    "sandwich+distill+calib",
    "sandwich+distill+privbn",
    "sandwich+distill+privbn+calib",
)
KEYS = ["split", "method", "depth", "width"]


class Points:
    """Mean, sd and count over seeds of Dice in points, per (split, method, depth, width)."""

    def __init__(self, results: pd.DataFrame):
        if results.empty:
            self.table = pd.DataFrame(columns=["mean", "sd", "n"])
            return
        grouped = results.assign(points=100 * results["dice"].astype(float)).groupby(KEYS)["points"]
        self.table = pd.DataFrame({"mean": grouped.mean(), "sd": grouped.std().fillna(0.0), "n": grouped.count()})

    def get(self, split: str, method: str, depth: int, width: float) -> tuple[float, float, int]:
        key = (split, method, depth, float(width))
        if key not in self.table.index:
            return math.nan, math.nan, 0
        row = self.table.loc[key]
        return float(row["mean"]), float(row["sd"]), int(row["n"])


def fmt(mean: float, sd: float, n: int) -> str:
    return "" if n == 0 else f"{mean:.1f} ± {sd:.1f}"


def best_elastic(val: pd.DataFrame, split: str) -> str:
    """The elastic method (with or without +calib) of highest mean validation Dice over the grid."""
    mine = val[(val["split"] == split) & ~val["method"].str.startswith(("individual", "uniform"))]
    if mine.empty:
        return ""
    return str(mine.groupby("method")["dice"].mean().sort_index().idxmax())  # over every sub-net and seed


def table1(points: Points, split: str) -> list[dict]:
    """The study's experiment: individual vs uniform depth dropout, per depth at full width."""
    rows = []
    for depth in DEPTHS:
        row: dict = {"depth": depth}
        for method in TABLE1_METHODS:
            row[method] = fmt(*points.get(split, method, depth, 1.0))
        ind, uni = points.get(split, "individual", depth, 1.0)[0], points.get(split, "uniform", depth, 1.0)[0]
        row["uniform - individual"] = f"{uni - ind:+.1f}"
        row["study individual"], row["study elastic"] = STUDY[depth]
        rows.append(row)
    return rows


def table2(points: Points, split: str) -> list[dict]:
    """Our elastic trainings at full width, per depth."""
    return [
        {"depth": depth} | {method: fmt(*points.get(split, method, depth, 1.0)) for method in TABLE2_METHODS}
        for depth in DEPTHS
    ]


def grid(points: Points, split: str, method: str) -> list[dict]:
    """Every sub-net of one elastic method against the individual U-Net of its shape (where trained)."""
    rows = []
    for depth in DEPTHS:
        for width in WIDTHS:
            ours, ind = points.get(split, method, depth, width), points.get(split, "individual", depth, width)
            row = {
                "split": split,
                "method": method,
                "depth": depth,
                "width": width,
                "elastic": fmt(*ours),
                "individual": fmt(*ind),
                "difference": "",
                "target met": "",
            }
            if ind[2]:
                row["difference"] = f"{ours[0] - ind[0]:+.1f}"
                row["target met"] = "yes" if ours[0] - ind[0] >= -TARGET_POINTS else "no"
            rows.append(row)
    return rows


def time_ratios(records: pd.DataFrame, split: str, elastic: str, replaced: list[str]) -> dict:
    """Training (and wall) seconds of one elastic run vs the individual runs it replaces, mean over the seeds
    that have all of them."""
    train, wall = [], []
    for _, mine in records[records["split"] == split].groupby("seed"):
        runs = mine.set_index("run")
        if elastic not in runs.index or not all(name in runs.index for name in replaced):
            continue
        train.append(runs.at[elastic, "train_seconds"] / runs.loc[replaced, "train_seconds"].sum())
        walls = pd.to_numeric(runs.loc[[elastic, *replaced], "wall_seconds"], errors="coerce")
        if walls.notna().all():
            wall.append(walls[elastic] / walls[replaced].sum())
    return {
        "train": sum(train) / len(train) if train else math.nan,
        "wall": sum(wall) / len(wall) if wall else math.nan,
        "seeds": len(train),
    }


def ratio_text(ratio: dict) -> str:
    if not ratio["seeds"]:
        return "not available (runs missing)"
    return (
        f"{ratio['train']:.2f} (training seconds), {ratio['wall']:.2f} (wall, with evaluation), "
        f"mean over {ratio['seeds']} seed(s)"
    )


def shortfall_text(points: Points, split: str, method: str) -> str:
    """One line: at how many shapes ``method`` meets the target, and its largest shortfall."""
    cells = [r for r in grid(points, split, method) if r["target met"]]
    met = [r for r in cells if r["target met"] == "yes"]
    worst = min(cells, key=lambda r: float(r["difference"]), default=None)
    text = (
        f"- {split}: `{method}` within {TARGET_POINTS:g} Dice point of (or above) the individual U-Net at "
        f"{len(met)} of {len(cells)} shapes"
    )
    if worst is not None and float(worst["difference"]) < 0:
        text += f"; largest shortfall {worst['difference']} points at depth {worst['depth']} width {worst['width']:g}"
    return text


def plot(
    points: Points, splits: list[str], methods: list[str], shapes: list[tuple[int, float]], path: Path, title: str
) -> None:
    """Bars of test Dice (mean ± sd over seeds) per shape and method, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from elasticnet.reporting import save_figure

    fig, axes = plt.subplots(
        1,
        len(splits),
        figsize=(max(6, 0.9 * len(shapes) * len(methods) / 2) * len(splits) / 1.6, 4),
        squeeze=False,
        sharey=True,
    )
    step = 0.8 / len(methods)
    for ax, split in zip(axes[0], splits):
        for i, method in enumerate(methods):
            xs, ys, es = [], [], []
            for j, (depth, width) in enumerate(shapes):
                mean, sd, n = points.get(split, method, depth, width)
                if n:
                    xs.append(j - 0.4 + step * (i + 0.5))
                    ys.append(mean)
                    es.append(sd)
            color = "0.6" if method.startswith("individual") else plt.get_cmap("tab10")(i % 10)
            ax.bar(xs, ys, step, yerr=es, capsize=2, label=method, color=color)
        ax.set_xticks(range(len(shapes)), [f"d{d}\nw{w:g}" for d, w in shapes])
        ax.set_title(f"{split} split", fontsize=9)
        ax.set_ylabel("test Dice (%), mean ± sd over seeds")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
