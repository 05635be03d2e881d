"""Where a parity gap comes from, as a picture: the elastic - individual test Dice gap per test sequence.

    python paper/sequence_gaps.py --profile converged-e128-b32

reads ``results/cvc_clinicdb/<profile>/gaps_by_sequence.csv`` (``paper/parity_bootstrap.py --by-group`` writes
it, and this plot with it, from the runs' checkpoints; this script redraws the plot from the committed CSV on any
machine) and writes ``gaps_by_sequence.png`` beside it: one heat map per split and method, a row per sub-net
shape, a column per test sequence (hardest first: lowest individual test Dice, mean over shapes and seeds;
labelled with its frame count), each cell the gap averaged over the seeds, and a last column ``all`` with the
split's gap (the frame-weighted mean of the columns, as in ``gaps.csv``). One dark column is one hard sequence
deciding a fold's verdict; a pale row of small deficits is a uniform cost of that shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from checkout import ROOT

from elasticnet.errors import UserError, run_script
from elasticnet.reporting import save_figure

CSV = "gaps_by_sequence.csv"
COLUMNS = ("split", "method", "depth", "width", "seed", "group", "images", "elastic", "individual", "gap")
PNG = "gaps_by_sequence.png"
CLIP = 15.0  # points: the colour scale's end; larger gaps are labelled, not coloured further


def panel(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """One split and method's rows as a shape x sequence table of gaps (mean over seeds), hardest sequence
    first, with the frame-weighted ``all`` column; and the column labels (sequence, frames)."""
    mean = rows.groupby(["depth", "width", "group"], as_index=False)[["gap", "individual", "images"]].mean()
    frames = mean.groupby("group").images.first()
    order = list(mean.groupby("group").individual.mean().sort_values(kind="stable").index)
    table = mean.pivot(index=["depth", "width"], columns="group", values="gap")[order]
    weights = frames[order].to_numpy(dtype=float)
    table["all"] = (table[order].to_numpy() * weights).sum(axis=1) / weights.sum()
    labels = [f"{str(g).rsplit('/', 1)[-1]}\n{int(frames[g])}" for g in order] + ["all\n" + str(int(weights.sum()))]
    return table, labels


def plot(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` (the rows of ``gaps_by_sequence.csv``) as one heat map per split and method, in ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(frame.groupby(["split", "method"]).groups)
    if not keys:
        raise UserError(f"no rows to plot: {CSV} is empty; run paper/parity_bootstrap.py --by-group first")
    panels = [panel(frame[(frame.split == s) & (frame.method == m)]) for s, m in keys]
    columns = max(len(labels) for _, labels in panels)
    heights = [len(table) + 2.2 for table, _ in panels]
    fig, axes = plt.subplots(
        len(keys),
        1,
        figsize=(2.5 + 0.5 * columns, 0.32 * sum(heights)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, (split, method), (table, labels) in zip(axes[:, 0], keys, panels):
        values = table.to_numpy(dtype=float)
        image = ax.imshow(values, cmap="RdBu", vmin=-CLIP, vmax=CLIP, aspect="auto")
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(
                    c, r, f"{v:+.1f}", ha="center", va="center", fontsize=6, color="white" if abs(v) > 9 else "black"
                )
        ax.axvline(len(labels) - 1.5, color="black", lw=1.2)  # the split's gap, apart from its sequences
        ax.set_xticks(range(len(labels)), labels, fontsize=6)
        mine = frame[(frame.split == split) & (frame.method == method)]
        seeds = ",".join(str(s) for s in sorted(mine.seed.unique()))
        # a shape with fewer seeds than the panel (a lost checkpoint) names its own
        own = {k: ",".join(str(s) for s in sorted(g.seed.unique())) for k, g in mine.groupby(["depth", "width"])}
        ticks = [f"({d},{w:g})" + ("" if own[d, w] == seeds else f"\nseeds {own[d, w]}") for d, w in table.index]
        ax.set_yticks(range(len(table)), ticks, fontsize=7)
        ax.set_title(
            f"{split}, {method}, seeds {seeds}: test Dice gap elastic - individual (points) per test sequence "
            "(frames below; hardest first)",
            fontsize=8,
        )
        fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="converged-e128-b32")
    args = p.parse_args(argv)
    source = ROOT / "results" / "cvc_clinicdb" / args.profile / CSV
    if not source.is_file():
        raise UserError(f"{source} does not exist; run paper/parity_bootstrap.py --by-group first")
    frame = pd.read_csv(source)
    if set(frame.columns) != set(COLUMNS):
        raise UserError(f"{source} is not a {CSV} of paper/parity_bootstrap.py (columns {', '.join(frame.columns)})")
    out = plot(frame, source.with_name(PNG))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_script(main)
