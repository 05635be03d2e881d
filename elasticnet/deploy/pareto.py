"""The Pareto front of sub-nets (more accurate and faster is better) and its plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from elasticnet.reporting import save_figure


def pareto_front(rows: Sequence[dict], cost: str = "latency_ms", gain: str = "dice") -> list[bool]:
    """For each row: True if no other row has lower-or-equal ``cost`` and higher-or-equal ``gain``, one
    of them strictly."""

    def dominated(r: dict) -> bool:
        return any(
            o is not r and o[cost] <= r[cost] and o[gain] >= r[gain] and (o[cost] < r[cost] or o[gain] > r[gain])
            for o in rows
        )

    return [not dominated(r) for r in rows]


def plot_pareto(rows: Sequence[dict], path: Path, title: str, cost: str = "latency_ms", gain: str = "dice") -> Path:
    """Scatter ``gain`` vs ``cost``, one labelled point per sub-net, the front joined by a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = sorted((r for r, on in zip(rows, pareto_front(rows, cost, gain)) if on), key=lambda r: r[cost])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    depths = sorted({r["depth"] for r in rows})
    for depth, marker in zip(depths, "os^Dvp*"):
        pts = [r for r in rows if r["depth"] == depth]
        ax.scatter(
            [r[cost] for r in pts], [r[gain] for r in pts], marker=marker, s=45, label=f"depth {depth}", zorder=3
        )
    for r in rows:
        ax.annotate(f"w{r['width']:g}", (r[cost], r[gain]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.plot([r[cost] for r in front], [r[gain] for r in front], "k--", lw=1, label="Pareto front", zorder=2)
    ax.set_xlabel(cost.replace("_", " "))
    ax.set_ylabel(f"validation {gain}")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
