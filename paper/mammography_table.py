"""Mammography masses on mini-MIAS: grouped 5-fold cross-validation, lesion-level detection per sub-net.

    python paper/mammography_table.py --data PATH [--profile cpu] [--folds 0,1,2,3,4] [--name NAME]
                                      [--flags "--loss bce_focal_tversky --dice-loss batch"] [--jobs 1]
    python paper/mammography_table.py --data PATH --evaluate-on val ...   # choosing a recipe: validation only

Every fold trains ``experiments/mammography.yaml`` (profile ``--profile``) with ``--fold k`` of 5; the split is
grouped by woman (both films of one woman in one part), so over the five folds every film is tested exactly
once. Each fold's sub-nets (BN statistics as calibrated after training, as exported) are evaluated on the
fold's test films (or its validation films with ``--evaluate-on val``) at the lesion level
(:mod:`elasticnet.training.detection`): a predicted component centred inside an annotated mass is a hit.

Writes ``results/mammography/<name>/``: ``table.csv`` and ``table.md`` (fold, depth, width,
sensitivity_at_0.5fp, sensitivity_at_1fp, sensitivity_at_2fp, dice_lesion, fp_rate_normal; fold ``pooled``
pools the candidates of all evaluated folds), ``diagnosis.csv`` (pooled, per sub-net: where masses are lost;
:func:`diagnosis_rows`), ``froc.png`` (pooled FROC per sub-net), ``COMMANDS.md`` with
the hardware, and every fold's small files (``runs/fold<k>/``: config, log, sub-net table, split, and
``evaluation-test.json`` or ``-val``: every sub-net's detection tally and lesion Dice, with the content hash of
the checkpoint evaluated; no checkpoints). A fold whose evaluation is committed is neither trained nor evaluated
again (unless ``--runs`` holds another checkpoint of it), so a table continues from what is committed on any
machine; and every committed fold of the part evaluated joins the table, so a call on some folds adds to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import NamedTuple

from checkout import ROOT
from runner import (
    NEEDS_SAME_DATA,
    TRAININGS,
    check_folder,
    check_out_folder,
    check_same_recipe,
    claim_out_folder,
    hardware_text,
    index_list,
    planned_config,
    run_pool,
    script_command,
    train_command,
    train_or_resume,
    write_commands,
)

from elasticnet.cli.arguments import at_least
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, save_figure, write_csv
from elasticnet.training.detection import SIZE_BINS, DetectionTally

CONFIG = ROOT / "experiments" / "mammography.yaml"
SMALL_FILES = ("config.yaml", "log.csv", "subnets.csv", "split.csv")
COLUMNS = [
    "fold",
    "depth",
    "width",
    "films",
    "lesions",
    "sensitivity_at_0.5fp",
    "sensitivity_at_1fp",
    "sensitivity_at_2fp",
    "dice_lesion",
    "fp_rate_normal",
]


def planned(args):
    """The config every fold trains (the profile with the recipe's flags; fold 0's, the others differ only in
    the fold): its fold count, lesion classes and working resolution."""
    return planned_config(fold_command(args, 0, args.runs / args.name / "fold0"))


def fold_command(args, fold: int, folder: Path) -> list[str]:
    flags = ["--fold", str(fold), "--seed", str(args.seed), *shlex.split(args.flags)]
    return train_command(args.config, args.profile, args.data, flags, args.device, folder)


def train_fold(args, fold: int, say=print) -> None:
    """Train fold ``fold`` unless its checkpoint is in ``--runs`` or its evaluation is committed (same recipe);
    ``say`` gets the progress lines (``runner.run_pool``)."""
    folder = args.runs / args.name / f"fold{fold}"
    command = fold_command(args, fold, folder)
    if (folder / "checkpoint.pt").is_file():
        check_same_recipe(command, folder)
        say(f"done fold {fold} (trained before)")
        return
    if evaluation_file(args, fold).is_file():
        check_same_recipe(command, evaluation_file(args, fold).parent)  # its committed config.yaml
        say(f"done fold {fold} (committed)")
        return
    say(f"training fold {fold}: {' '.join(command[1:])}")
    seconds = train_or_resume(command, folder, args.threads, folder.parent / f"fold{fold}.log", args.device)
    say(f"done fold {fold}: trained in {seconds:.0f} s")


class FoldResult(NamedTuple):
    """A sub-net on one fold's films: its detection tally and lesion Dice (None: no film with a lesion)."""

    tally: DetectionTally
    dice_lesion: float | None


def evaluation_file(args, fold: int) -> Path:
    """The fold's committed evaluation (``runs/fold<k>/evaluation-test.json``, or ``-val``)."""
    return args.out / "runs" / f"fold{fold}" / f"evaluation-{args.evaluate_on}.json"


def save_evaluation(path: Path, checkpoint_sha256: str, results: dict[tuple[int, float], FoldResult]) -> None:
    subnets = [
        {
            "depth": depth,
            "width": width,
            "dice_lesion": None if r.dice_lesion is None or r.dice_lesion != r.dice_lesion else r.dice_lesion,
            "tally": r.tally.to_dict(),
        }
        for (depth, width), r in sorted(results.items())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"format": 1, "checkpoint_sha256": checkpoint_sha256, "subnets": subnets}))


def load_evaluation(path: Path) -> tuple[str, dict[tuple[int, float], FoldResult]]:
    """(the evaluated checkpoint's content hash, the sub-nets' results) of a saved evaluation."""
    try:
        saved = json.loads(path.read_text())
        results = {
            (int(s["depth"]), float(s["width"])): FoldResult(DetectionTally.from_dict(s["tally"]), s["dice_lesion"])
            for s in saved["subnets"]
        }
        return str(saved["checkpoint_sha256"]), results
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{path} is not an evaluation this script wrote ({e}); move it away to evaluate again"
        ) from None


def fold_results(args, fold: int) -> dict[tuple[int, float], FoldResult]:
    """The fold's sub-nets on its test (or validation) films: the committed evaluation while it belongs to the
    checkpoint in ``--runs`` (or no checkpoint is there), else evaluated from the checkpoint and committed."""
    saved = evaluation_file(args, fold)
    checkpoint = args.runs / args.name / f"fold{fold}" / "checkpoint.pt"
    if saved.is_file() and not checkpoint.is_file():
        return load_evaluation(saved)[1]
    from elasticnet.checkpoint import content_hash, load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    identity = content_hash(ckpt)  # the hash saved in the checkpoint (checked by load_checkpoint)
    if saved.is_file():
        sha, results = load_evaluation(saved)
        if sha == identity:
            return results
    results = evaluate_fold(args, fold, ckpt, checkpoint.parent)
    save_evaluation(saved, identity, results)
    return results


def table_folds(args, asked: list[int]) -> list[int]:
    """The folds of the table: those asked for and every fold whose evaluation of this part is committed in the
    results folder (a call on some folds adds to the table, never shrinks it); a committed fold of another recipe
    stops the script."""
    committed = []
    for folder in sorted((args.out / "runs").glob("fold*")):
        fold = folder.name[len("fold") :]
        if fold.isdigit() and (folder / f"evaluation-{args.evaluate_on}.json").is_file():
            check_same_recipe(fold_command(args, int(fold), args.runs / args.name / folder.name), folder)
            committed.append(int(fold))
    return sorted(set(asked) | set(committed))


def evaluate_fold(args, fold: int, ckpt: dict, run_dir: Path) -> dict[tuple[int, float], FoldResult]:
    """Every sub-net of the fold's checkpoint on its test (or validation) films, BN as calibrated after training."""
    import torch
    from torch.utils.data import DataLoader

    from elasticnet.checkpoint import cut_subnet
    from elasticnet.config import RunConfig
    from elasticnet.models.subnet import SubNet
    from elasticnet.training.evaluate import evaluate
    from elasticnet.training.run_dir import run_split

    cfg = RunConfig.from_saved(ckpt["config"])
    split = run_split(cfg, run_dir, NEEDS_SAME_DATA)
    films = split.test if args.evaluate_on == "test" else split.val
    if films is None:
        raise UserError(f"fold {fold} has no test part (folds < 2?)")
    loader = DataLoader(films, batch_size=4)
    results = {}
    for depth in cfg.model.depths:
        for width in cfg.model.widths:
            static = cut_subnet(ckpt, SubNet(depth, width))
            r = evaluate(static, loader, torch.device("cpu"), cfg.train.threshold, cfg.data.tile, detection=True)
            results[(depth, width)] = FoldResult(r.tally, r.dice_lesion)
    return results


def keep_small_files(args, fold: int) -> None:
    src, dst = args.runs / args.name / f"fold{fold}", args.out / "runs" / f"fold{fold}"
    if (src / "checkpoint.pt").is_file():
        dst.mkdir(parents=True, exist_ok=True)
        for name in SMALL_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, dst / name)


def row(fold, depth: int, width: float, tally, dice_lesion: float | None) -> dict:
    """A table row from a sub-net's detection tally and lesion Dice (None: no film with a mass)."""
    s = tally.summary()
    return {
        "fold": fold,
        "depth": depth,
        "width": width,
        "films": tally.films,
        "lesions": s["lesions"],
        **{k: round(s[k], 4) for k in ("sensitivity_at_0.5fp", "sensitivity_at_1fp", "sensitivity_at_2fp")},
        "dice_lesion": round(float("nan") if dice_lesion is None else dice_lesion, 4),
        "fp_rate_normal": round(s["fp_rate_normal"], 4),
    }


def pooled_rows(per_fold: dict[int, dict]) -> tuple[list[dict], dict]:
    """Rows of the pooled folds (candidates pooled; lesion Dice averaged over all films with a mass)."""
    rows, tallies = [], {}
    for shape in next(iter(per_fold.values())):
        results = [per_fold[f][shape] for f in sorted(per_fold)]
        tally = results[0].tally
        for r in results[1:]:
            tally = tally.merge(r.tally)
        lesion_films = [
            (r.dice_lesion, r.tally.films - r.tally.normal_films)
            for r in results
            if r.dice_lesion is not None and r.dice_lesion == r.dice_lesion
        ]
        weight = sum(n for _, n in lesion_films)
        dice = sum(d * n for d, n in lesion_films) / weight if weight else float("nan")
        tallies[shape] = tally
        rows.append(row("pooled", *shape, tally, dice))
    return rows, tallies


DIAGNOSIS = [
    "depth",
    "width",
    "lesions",
    "sensitivity_at_1fp",
    "sensitivity_at_1fp_thresholded",
    "lesions_detectable",
    "lesions_covered",
]
# mass sizes: equivalent diameter below 1/16, 1/16 to 1/8, and 1/8 or more of the film's shorter side (SIZE_BINS
# at 256 x 256: 16 and 32 px), so that a bin holds the same masses at every working resolution
SIZE_NAMES = ("small", "medium", "large")
DIAGNOSIS += [f"{c}_{n}" for n in SIZE_NAMES for c in ("lesions", "sensitivity_at_1fp")]


def size_bins(image_size: tuple[int, int]) -> tuple[float, ...]:
    """SIZE_BINS (pixels at 256 x 256) in pixels of films evaluated at ``image_size``."""
    return tuple(b * min(image_size) / 256 for b in SIZE_BINS)


def diagnosis_rows(tallies: dict, bins: tuple[float, ...] = SIZE_BINS) -> list[dict]:
    """Per sub-net, pooled: where masses are lost (see :mod:`elasticnet.training.detection`): never touched by a
    candidate (1 - covered), swallowed by one centred elsewhere (covered - detectable), or ranked below 1 false
    positive per film (detectable - sensitivity); the sensitivity at 1 FP when the segmentation threshold
    itself traces the curve; and the masses and the sensitivity at 1 FP per size (equivalent diameters in pixels
    of the evaluated film split at ``bins``, :func:`size_bins`: ``_small`` < 16 px at 256 x 256, ``_medium``
    16-32, ``_large`` >= 32; 4x that on the 1024 x 1024 film)."""
    out = []
    for (depth, width), tally in sorted(tallies.items()):
        s = tally.summary()
        for name, (_, _, lesions, share) in zip(SIZE_NAMES, tally.sensitivity_by_size(1.0, bins), strict=True):
            s[f"lesions_{name}"], s[f"sensitivity_at_1fp_{name}"] = lesions, share
        out.append({"depth": depth, "width": width} | {k: round(s[k], 4) for k in DIAGNOSIS[2:]})
    return out


def plot_froc(tallies: dict, path: Path, title: str, lesions: str = "masses") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for (depth, width), tally in sorted(tallies.items()):
        curve = tally.froc()
        if curve:
            ax.step([fp for _, fp, _ in curve], [s for _, _, s in curve], where="post", label=f"({depth},{width:g})")
    for rate in (0.5, 1, 2):
        ax.axvline(rate, color="grey", lw=0.5, ls=":")
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 1)
    ax.set_xlabel("false positives per film")
    ax.set_ylabel(f"sensitivity ({lesions} detected)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, title="(depth, width)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the mini-MIAS folder (or a converted set in images/ + masks/)")
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--folds", default="0,1,2,3,4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flags", default="", help="extra training flags (the recipe), e.g. '--loss bce_focal_tversky'")
    p.add_argument("--name", default="", help="results/mammography/<name> (default: the profile)")
    p.add_argument("--evaluate-on", default="test", choices=["test", "val"])
    p.add_argument("--jobs", type=at_least(1), default=1)
    p.add_argument("--threads", type=at_least(0), default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "mammography")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data} is not a folder; give the mini-MIAS folder")
    args.name = args.name or args.profile
    args.out = args.out or ROOT / "results" / "mammography" / args.name
    check_out_folder(args.out)  # before training; claimed once the recipe and folds are known to be valid
    check_folder(args.runs)
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    folds = index_list(args.folds, "--folds", "0,1,2,3,4")
    recipe = planned(args)
    n_folds = recipe.data.folds
    if max(folds) >= n_folds:
        raise UserError(f"--folds {args.folds}: {args.config} splits the films into {n_folds} folds, 0..{n_folds - 1}")
    claim_out_folder(args.out)
    run_pool(folds, args.jobs, lambda k, say: train_fold(args, k, say))
    for k in folds:
        keep_small_files(args, k)
    folds = table_folds(args, folds)
    per_fold = {k: fold_results(args, k) for k in folds}
    rows = [row(k, *shape, r.tally, r.dice_lesion) for k in folds for shape, r in per_fold[k].items()]
    pooled, tallies = pooled_rows(per_fold)
    rows += pooled
    fold_text = ",".join(str(k) for k in folds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "table.csv")
    part = "test films" if args.evaluate_on == "test" else "validation films (recipe choice)"
    # mini-MIAS `all`: every abnormality with coordinates (calcifications, distortions, asymmetries, masses)
    lesions, lesion = ("abnormalities", "an abnormality") if recipe.data.mias_classes == "all" else ("masses", "a mass")
    atomic_write_text(
        args.out / "table.md",
        f"# Mammography {lesions}, {args.name}: folds {fold_text} of {n_folds} (grouped by woman), {part}\n\n"
        f"Sensitivity: share of {lesions} detected (a predicted component centred inside the annotated circle) at "
        f"<= 0.5 / 1 / 2 false positives per film; `dice_lesion`: mean Dice over films with {lesion}; "
        f"`fp_rate_normal`: share of films without {lesion} that show a false positive at threshold 0.5.\n\n"
        + markdown_table(rows, COLUMNS)
        + "\n",
    )
    write_csv(diagnosis_rows(tallies, size_bins(recipe.data.image_size)), args.out / "diagnosis.csv")
    title = f"mini-MIAS {lesions}, {args.name}, pooled over folds {fold_text}"
    plot_froc(tallies, args.out / "froc.png", title, lesions)
    write_commands(
        args.out,
        [script_command("mammography_table.py", sys.argv[1:])],
        TRAININGS
        + ":\n\n"
        + "\n".join("    " + " ".join(fold_command(args, k, args.runs / args.name / f"fold{k}")[1:]) for k in folds)
        + f"\n\n{hardware_text(args.device)}\n",
    )
    print(markdown_table(pooled, COLUMNS))
    print(f"wrote {args.out}/ (table.csv, table.md, diagnosis.csv, froc.png, COMMANDS.md, runs/)")


if __name__ == "__main__":
    run_script(main)
