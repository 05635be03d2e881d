"""A study's summary: every trial, the best ones, parameter importances, and the optimisation history.

Written (atomically) by every worker when it stops, so the last one leaves the complete picture:
``trials.csv`` (number, state, value(s), parameters, duration, run folder, error), ``best.csv`` (the 5
best trials, or the Pareto-optimal ones for Dice vs FLOPs), ``importances.csv``/``.png`` (Optuna's
PED-ANOVA importances for a high Dice, from 2 completed trials on; needs no scikit-learn), ``history.png`` (value per trial and best so far, or
the Dice/FLOPs trade-off).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from elasticnet.reporting import save_figure, write_csv
from elasticnet.tune.folder import BEST, HISTORY, IMPORTANCES, IMPORTANCES_PLOT, TRIALS


def trial_rows(study) -> list[dict[str, Any]]:
    names = sorted({k for t in study.trials for k in t.params})
    rows = []
    for t in study.trials:
        values = t.values or []
        row = {"number": t.number, "state": t.state.name, "dice": round(values[0], 4) if values else ""}
        if len(study.directions) > 1:
            row["mflops"] = round(values[1], 1) if len(values) > 1 else ""
        row |= {k: t.params.get(k, "") for k in names}
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start else ""
        )
        row |= {
            "seconds": round(seconds, 1) if seconds != "" else "",
            "run_dir": t.user_attrs.get("run_dir", ""),
            "note": t.user_attrs.get("error")
            or ("worker died; retried" if t.user_attrs.get("worker_died") else "")
            + (f"retry of {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else ""),
        }
        rows.append(row)
    return rows


def write_summary(study, folder: Path, settings) -> Path:
    import optuna
    from optuna.trial import TrialState

    folder.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(study)
    if rows:
        write_csv(rows, folder / TRIALS)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    if len(study.directions) > 1:
        best_numbers = {t.number for t in study.best_trials}
        best = [r for r in complete if r["number"] in best_numbers]
    else:
        best = sorted(complete, key=lambda r: -r["dice"])[:5]
    if best:
        write_csv(best, folder / BEST)
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) >= 2:
        try:
            with warnings.catch_warnings():  # its reminder that it ranks for low targets: ours is -Dice
                warnings.simplefilter("ignore")
                importances = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.PedAnovaImportanceEvaluator(), target=lambda t: -t.values[0]
                )
        except (RuntimeError, ValueError):  # e.g. every trial had the same parameters
            importances = {}
        if importances:
            write_csv([{"param": k, "importance": round(v, 4)} for k, v in importances.items()], folder / IMPORTANCES)
            _bar(
                importances,
                folder / IMPORTANCES_PLOT,
                f"{settings.study}: parameter importance for {settings.objective} Dice ({len(done)} trials)",
            )
    if complete:
        _history(rows, len(study.directions) > 1, folder / HISTORY, settings)
    return folder


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    save_figure(fig, path, dpi=120)


def _bar(importances: dict[str, float], path: Path, title: str) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(importances) + 1.5))
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance for a high Dice (PED-ANOVA, normalised)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _history(rows: list[dict], multi: bool, path: Path, settings) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 4))
    done = [r for r in rows if r["state"] == "COMPLETE"]
    if multi:
        ax.scatter([r["mflops"] for r in done], [r["dice"] for r in done], s=20)
        ax.set_xlabel("MFLOPs")
        ax.set_ylabel(f"{settings.objective} validation Dice")
    else:
        ax.scatter([r["number"] for r in done], [r["dice"] for r in done], s=20, label="trial")
        best, line = -1.0, []
        for r in sorted(done, key=lambda r: r["number"]):
            best = max(best, r["dice"])
            line.append((r["number"], best))
        ax.step([n for n, _ in line], [b for _, b in line], where="post", color="k", label="best so far")
        pruned = [r for r in rows if r["state"] == "PRUNED"]
        if pruned:
            ax.scatter([r["number"] for r in pruned], [0] * len(pruned), marker="x", color="grey", label="pruned")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{settings.objective} validation Dice")
        ax.legend(fontsize=8)
    ax.set_title(f"study {settings.study}: {len(rows)} trials", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
