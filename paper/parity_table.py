"""Elastic sub-nets vs individually trained U-Nets at convergence: the parity protocol on CVC-ClinicDB.

    python paper/parity_table.py --data PATH [--profile converged] [--splits random,grouped-f0,grouped-f1]
        [--seeds 0,1,2] [--arms slimmable,...] [--comparisons epochs,compute] [--shapes all|table]
        [--jobs N --threads N] [--dry-run] [--report-only]

The protocol (issue 13):
- Individual U-Nets of every shape of the grid depth {3,4,5} x width {0.25,0.5,0.75,1} (``--shapes all``; ``table``:
  the six of the earlier tables) are trained for the profile's E epochs (E chosen by ``paper/convergence.py``).
- Each elastic recipe (``--arms``, see ARMS) is trained twice: for E epochs (**equal epochs**), and for the most
  epochs whose training FLOPs stay within half the FLOPs of training the 12 individual nets for E epochs
  (**equal compute**, the comparison the target uses). FLOPs are counted from the model (3 x forward FLOPs per
  image per sub-net run, summed over the planned steps), never from wall time.
- Paired by seed; splits ``random`` (fold 0 of 5 by image) and ``grouped-f<k>`` (fold k of 5 by video sequence).
- Elastic sub-nets are evaluated with BN statistics re-estimated per sub-net, individual nets with their own.
  Recipes are compared on validation Dice (``ablation.csv``); the test columns are for the final table.

Every finished run's small files (config.yaml, log.csv, subnets.csv, record.json; never checkpoints) are copied
to ``results/cvc_clinicdb/<profile>/runs/<split>/seed<k>/<run>/``; a run found there is not trained again, so an
interrupted campaign continues from what is committed, on any machine. Writes summary.csv (split, method,
depth, width, seed, dice, iou, epochs, train_seconds, train_tflops), targets.csv (split, method, comparison,
worst_gap, mean_gap, compute_ratio, met), ablation.csv (validation), tables.md, gaps.png, COMMANDS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from checkout import ROOT
from runner import (
    TRAININGS,
    check_folder,
    check_out_folder,
    check_same_recipe,
    claim_out_folder,
    git_commit,
    hardware_text,
    invocations,
    run_pool,
    script_command,
    seed_list,
    train_command,
    train_or_resume,
    write_commands,
)

from elasticnet import __version__
from elasticnet.cli.arguments import at_least
from elasticnet.config import build_config
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, save_figure
from elasticnet.runtime import DevicePool
from elasticnet.training.compute import subnet_flops
from elasticnet.training.recipe import epochs_within

CONFIG = ROOT / "paper" / "cvc_clinicdb_study.yaml"  # the studies' frozen base (its header says why)
DEPTHS, WIDTHS = (3, 4, 5), (0.25, 0.5, 0.75, 1.0)
GRID = ("--depths", "3,4,5", "--widths", "0.25,0.5,0.75,1")
TABLE_SHAPES = [(3, 0.25), (3, 1.0), (4, 0.5), (4, 1.0), (5, 0.25), (5, 1.0)]
COMPUTE_SHARE = 0.5  # equal compute: at most this share of the 12 individual trainings' FLOPs
TARGET = -1.0  # Dice points: worst paired gap allowed
TARGET_SEEDS = 3  # the target is a mean over this many paired seeds; fewer meet nothing yet
SMALL_FILES = ("config.yaml", "log.csv", "subnets.csv", "record.json")
INDIVIDUAL, OWN_E = "individual", "individual@own-e"  # the individual nets at the profile's E, at their own E
# the columns of summary.csv, as the protocol names them
SUMMARY_COLUMNS = [
    "split",
    "method",
    "depth",
    "width",
    "seed",
    "dice",
    "iou",
    "epochs",
    "train_seconds",
    "train_tflops",
]
# The elastic recipes (flags on top of the profile), from the weight-sharing literature (issue 13, part 2).


def slim(always: str = "d4-w1,d3-w1") -> tuple[str, ...]:
    """The slimmable rule: the largest, the smallest and ``always`` every step (by default every deployed
    full-width depth)."""
    return ("--strategy", "sandwich", "--always-subnets", always, "--weight-smallest", "0.5")


def individual_name(depth: int, width: float) -> str:
    """The run folder of the individual U-Net of a shape."""
    return f"individual-d{depth}-w{width:g}"


def late_distill(teacher: str) -> tuple[str, ...]:
    """Distillation from half-time on, per-pixel BCE to the teacher's probabilities, ramped in over 5 % of the
    steps (the literature's recipe for short schedules)."""
    return (
        "--distill",
        "--distill-teacher",
        teacher,
        "--distill-loss",
        "bce",
        "--distill-start",
        "0.5",
        "--ramp",
        "0.05",
    )


SLIM = slim()
# the six table shapes every step and no random one (the best recipe; the +table arms build on it)
TABLE = (*GRID, *slim("d4-w1,d3-w1,d4-w0.5,d5-w0.25"), "--junction", "private", "--num-random", "0")
ARMS: dict[str, tuple[str, ...]] = {
    "uniform": ("--depths", "3,4,5", "--widths", "1", "--strategy", "uniform"),  # the originating study
    "sandwich": (*GRID, "--strategy", "sandwich"),  # the earlier tables' method
    "slimmable": (*GRID, *SLIM),  # every deployed full-width depth every step
    "slimmable+floor+clip": (*GRID, *SLIM, "--lr-floor", "0.05", "--grad-clip", "1"),
    "slimmable+sgd": (*GRID, *SLIM, "--optimizer", "sgd", "--lr", "0.05", "--lr-floor", "0.05", "--grad-clip", "1"),
    "slimmable+flops": (*GRID, *SLIM, "--random-by-flops"),
    "slimmable+junction": (*GRID, *SLIM, "--junction", "private"),  # a private first decoder block per depth
    # the shapes drawn at random lose most (seed spread 0.1-0.2 points): more of them per step
    "slimmable+junction+r3": (*GRID, *SLIM, "--junction", "private", "--num-random", "3"),
    "slimmable+junction+all": (*GRID, *SLIM, "--junction", "private", "--num-random", "8"),  # all 12 every step
    # the six table shapes every step and no random one: the same FLOPs per step as one random draw (1694 vs
    # 1688 MFLOPs at 64x96), so the same epochs; the other six grid shapes are trained only through sharing
    "slimmable+junction+table": TABLE,
    # and a private bottleneck per depth: (3,1) loses in every recipe, and its bottleneck is the deeper
    # sub-nets' third encoder level; its own last encoder block frees it (+56 k parameters for depth 3, +222 k
    # for depth 4, on 2.15 M)
    "slimmable+junction+table+bottleneck": (
        *GRID,
        *slim("d4-w1,d3-w1,d4-w0.5,d5-w0.25"),
        "--junction",
        "private",
        "--bottleneck",
        "private",
        "--num-random",
        "0",
    ),
    # the smallest sub-net at twice the largest's loss weight instead of half: at E = 128 (3,0.25) lost 8.6 test
    # points (val 3.6) while its individual net still climbed to E = 256; it costs 1.3 % of a step's FLOPs
    "slimmable+junction+table+small2": (
        *GRID,
        *slim("d4-w1,d3-w1,d4-w0.5,d5-w0.25"),
        "--weight-smallest",
        "2",
        "--junction",
        "private",
        "--num-random",
        "0",
    ),
    # in-place distillation (US-Nets, BigNAS) from the live largest sub-net from half-time on: it runs every
    # step anyway, so the teacher costs nothing and the epochs stay 106; per-pixel BCE to its probabilities
    "slimmable+junction+table+kd": (*TABLE, *late_distill("live")),
    # switchable BN (slimmable networks; NASViT's switchable scaling): each width its own BN affine parameters
    # and statistics, so the narrow sub-nets' first channels may scale apart from the wide ones' (+4 x 2 x C
    # BN parameters; the exported sub-net is a plain U-Net with its width's BN)
    "slimmable+junction+table+pwbn": (*TABLE, "--bn-mode", "per_width"),
    # twice the learning rate: with AdamW the summed gradient is normalised per coordinate, so each of the six
    # sub-nets sharing the first channels advances by about 1/sqrt(6) of a solo step (the literature survey's
    # diagnosis); the narrow sub-nets, all of whose weights are shared, saturate early
    "slimmable+junction+table+lr4": (*TABLE, "--lr", "0.004"),
    # gradient projection (NASViT) turned round: where the largest's gradient opposes the smaller sub-nets' in a
    # weight tensor, the largest gives up the opposing part (the full-width depth-4/5 sub-nets are above their
    # individual nets, the narrow ones below); one stored gradient copy, the same FLOPs
    "slimmable+junction+table+proj": (*TABLE, "--grad-projection", "subnets"),
    # (4,0.5), the shape below its individual net on every random seed (-2.0, -1.8, -3.0), at twice the loss weight
    # (`+small2` did this for the smallest and lifted nothing; (4,0.5) has 5x its channels)
    "slimmable+junction+table+w45": (*TABLE, "--subnet-weights", "d4-w0.5=2"),
    "slimmable+pwbn": (*GRID, *SLIM, "--bn-mode", "per_width"),  # switchable BN (slimmable networks)
    "slimmable+warm": (*GRID, *SLIM, "--shrink-start", "0.3", "--width-start", "0.45", "--ramp", "0.05"),
    "slimmable+ema": (*GRID, *SLIM, *late_distill("ema"), "--ema-decay", "0.98"),
}


@dataclass(frozen=True)
class Run:
    split: str
    seed: int
    name: str  # folder name
    method: str  # "individual", "individual@own-e" or "<arm>@<comparison>"
    flags: tuple[str, ...]
    epochs: int
    shape: tuple[int, float] | None = None

    @property
    def key(self) -> Path:
        return Path(self.split) / f"seed{self.seed}" / self.name


def split_flags(split: str) -> tuple[str, ...]:
    if split == "random":
        return ("--split", "random", "--folds", "5", "--fold", "0")
    if split.startswith("grouped-f") and split[9:].isdigit():
        return ("--split", "grouped", "--folds", "5", "--fold", split[9:])
    raise UserError(f"unknown split {split!r}; use random or grouped-f<k> (k = 0..4)")


def layout(args, split: str) -> tuple[int, int]:
    """(steps per epoch, images per step) of a split's training set: the data decide, so they are read once."""
    from elasticnet.data import build_datasets

    cfg = build_config(str(args.config), {"data": args.data, **flag_dict(split_flags(split))}, args.profile)
    n = len(build_datasets(cfg.data, cfg.model.in_channels, 0).train)
    batch = min(cfg.train.batch_size, n)
    return n // batch, batch


def flag_dict(flags: tuple[str, ...]) -> dict[str, str]:
    out, key = {}, None
    for token in flags:
        if token.startswith("--"):
            key = token[2:].replace("-", "_")
            out[key] = "true"
        else:
            out[key] = token
    return out


def plan(args) -> tuple[list[Run], dict]:
    base = build_config(str(args.config), {"data": args.data}, args.profile)
    E, base_width = base.train.epochs, base.model.base_width
    size = tuple(base.data.image_size)
    flops = subnet_flops(
        build_config(str(args.config), {"data": args.data, **flag_dict(GRID)}, args.profile).model, size
    )
    runs, budget = [], {}
    for split in args.splits:
        steps, batch = layout(args, split)
        # the 12 individual nets' training FLOPs for E epochs
        budget[split] = sum(3 * f * batch * steps * E for f in flops.values())
        for seed in args.seeds:
            # the elastic trainings first: they are the longest, so parallel jobs end closer together
            for arm in args.arms:
                for comparison in args.comparisons:
                    epochs = E
                    if comparison == "compute":
                        cfg = build_config(str(args.config), {"data": args.data, **flag_dict(ARMS[arm])}, args.profile)
                        epochs = epochs_within(cfg, steps, batch, COMPUTE_SHARE * budget[split], size)
                    runs.append(Run(split, seed, f"{arm}@{comparison}", f"{arm}@{comparison}", ARMS[arm], epochs))
            for depth, width in sorted(args.shape_list, key=lambda s: (-s[0] * s[1], -s[0])):  # largest first
                flags = ("--depths", str(depth), "--widths", "1", "--base-width", str(round(base_width * width)))
                name = individual_name(depth, width)
                runs.append(Run(split, seed, name, INDIVIDUAL, flags, E, (depth, width)))
                own = args.own_epochs.get((depth, width), E)
                if own > E:  # a shape still climbing at E: trained again to its own convergence point
                    runs.append(Run(split, seed, f"{name}-e{own}", OWN_E, flags, own, (depth, width)))
    return runs, budget


def own_epochs(path: Path) -> dict[tuple[int, float], int]:
    """Each shape's own E from ``paper/convergence.py`` (``convergence_epochs.csv``): the smallest epoch count
    whose doubling adds < 1 validation point, or, for a shape still climbing, the longest training tried."""
    if not path.is_file():
        raise UserError(
            f"--individual-e own needs {path}: run paper/convergence.py --shapes ... first (it writes each "
            "shape's own E)"
        )
    table = pd.read_csv(path)
    return {
        (int(r.depth), float(r.width)): int(r.own_e if pd.notna(r.own_e) else r.longest_tried)
        for r in table.itertuples()
    }


def command(args, run: Run, folder: Path) -> list[str]:
    flags = [*split_flags(run.split), "--seed", str(run.seed), *run.flags, "--epochs", str(run.epochs)]
    return train_command(args.config, args.profile, args.data, flags, args.device, folder)


def committed(args, run: Run) -> Path:
    return args.out / "runs" / run.key


def done(folder: Path) -> bool:
    return (folder / "subnets.csv").is_file() and (folder / "record.json").is_file()


def train_one(args, run: Run, threads: int, devices: DevicePool | None = None, say=print) -> None:
    """Train, resume or reuse one run; ``say`` gets a line when it is done (``runner.run_pool``'s progress)."""
    if done(committed(args, run)):
        check_same_recipe(command(args, run, args.runs / run.key), committed(args, run))
        say(f"done {run.key} (committed)")
        return
    if devices is not None:  # the job runs on a device of the pool (GPUs round-robin)
        with devices.take() as device:
            return train_one(argparse.Namespace(**{**vars(args), "device": device}), run, threads, say=say)
    folder = args.runs / run.key
    if not (folder / "checkpoint.pt").is_file():
        wall = train_or_resume(command(args, run, folder), folder, threads, folder / "train.log", args.device)
    else:
        check_same_recipe(command(args, run, folder), folder)
        wall = float("nan")
    keep(args, run, folder, wall, threads)
    say(f"done {run.key}")


def keep(args, run: Run, folder: Path, wall: float, threads: int) -> None:
    """Copy a finished run's small files into results/ (committed), with a record of its cost."""
    from elasticnet.checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder / "checkpoint.pt")
    record = {
        "method": run.method,
        "epochs": ckpt["epoch"],
        "train_seconds": ckpt["train_seconds"],
        "train_tflops": ckpt.get("train_tflops"),
        "precision": ckpt.get("precision", "fp32"),
        "wall_seconds": None if wall != wall else round(wall, 1),
        "threads": threads,
        "elasticnet": __version__,
        "commit": git_commit(),
        "hardware": hardware_text(args.device),
        "command": " ".join(command(args, run, folder)[1:]),
    }
    atomic_write_text(folder / "record.json", json.dumps(record, indent=1))
    target = committed(args, run)
    target.mkdir(parents=True, exist_ok=True)
    for name in SMALL_FILES:
        shutil.copy2(folder / name, target / name)
    splits = args.out / "splits"
    splits.mkdir(exist_ok=True)
    if not (splits / f"{run.split}.csv").exists():
        shutil.copy2(folder / "split.csv", splits / f"{run.split}.csv")


def epochs_done(folder: Path) -> int:
    """The last finished epoch of a run folder's log.csv (0 when it has none)."""
    log = folder / "log.csv"
    lines = log.read_text().splitlines()[1:] if log.is_file() else []
    return int(lines[-1].split(",")[0]) if lines and lines[-1].split(",")[0].isdigit() else 0


def progress(args, runs: list[Run]) -> str:
    """What ``--dry-run`` prints: each planned run, whether it is committed, started under ``--runs`` (its last
    epoch) or still to train, and the training time left, estimated per run name from the committed runs'
    ``train_seconds`` (the same shape or recipe on other splits and seeds; none where nothing is committed)."""
    seconds: dict[str, list[float]] = {}
    for record_file in (args.out / "runs").glob("*/seed*/*/record.json"):
        record = json.loads(record_file.read_text())
        if record.get("train_seconds") and record.get("epochs"):
            seconds.setdefault(record_file.parent.name, []).append(record["train_seconds"] / record["epochs"])
    lines, left, unknown, counts = [], 0.0, 0, {"committed": 0, "started": 0, "to train": 0}
    for run in runs:
        if done(committed(args, run)):
            lines.append(f"{run.key}: {run.epochs} epochs, committed")
            counts["committed"] += 1
            continue
        epoch = epochs_done(args.runs / run.key)
        state = "started" if epoch else "to train"
        counts[state] += 1
        per_epoch = sorted(seconds.get(run.name, []))
        if per_epoch:
            estimate = per_epoch[len(per_epoch) // 2] * (run.epochs - epoch)
            left += estimate
            eta = f"about {estimate / 60:.0f} min left"
        else:
            unknown += 1
            eta = "no estimate"
        lines.append(f"{run.key}: {run.epochs} epochs, {state}" + (f" (epoch {epoch})" if epoch else "") + f"; {eta}")
    head = f"{counts['committed']} committed, {counts['started']} started, {counts['to train']} to train"
    if unknown and unknown == counts["started"] + counts["to train"]:
        return "\n".join([*lines, f"{head}; no estimate of the time left (nothing of these names is committed)"])
    summary = (
        f"{head}; about {left / 3600:.1f} core-hours of training left (one thread per run; divide by --jobs for the wall "
        "time), from the median seconds per epoch of the committed runs of each name"
        + (f"; {unknown} runs without an estimate (nothing of their name is committed)" if unknown else "")
    )
    return "\n".join([*lines, summary])


# ---- results ----


def collect(args, runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        folder = committed(args, run)
        if not done(folder):
            continue
        record = json.loads((folder / "record.json").read_text())
        table = pd.read_csv(folder / "subnets.csv")
        for _, r in table.iterrows():
            suffix = "_bn_as_trained" if is_individual(run.method) else ""  # individual nets: their own BN
            depth, width = run.shape or (int(r["depth"]), float(r["width"]))
            rows.append(
                {
                    "split": run.split,
                    "method": run.method,
                    "depth": depth,
                    "width": width,
                    "seed": run.seed,
                    "dice": r[f"test_dice{suffix}"],
                    "iou": r[f"test_iou{suffix}"],
                    "epochs": record["epochs"],
                    "train_seconds": record["train_seconds"],
                    "train_tflops": record["train_tflops"],
                    "val_dice": r[f"dice{suffix}"],
                }
            )
    return pd.DataFrame(rows)


def is_individual(method: pd.Series | str):
    return method.str.startswith(INDIVIDUAL) if isinstance(method, pd.Series) else method.startswith(INDIVIDUAL)


def seed_gaps(frame: pd.DataFrame, column: str, reference: str = INDIVIDUAL) -> pd.DataFrame:
    """Per split, elastic method, shape and seed: the elastic and individual ``column`` and their paired gap
    (elastic - individual, in points), the pooled grouped folds included (:func:`pooled_folds`). ``reference``
    OWN_E: against the individual nets at their own E where a shape has one, else at the profile's E;
    equal-compute methods only (their budget counts the individual nets at the profile's E, so it stays a lower
    bound)."""
    columns = ["split", "method", "depth", "width", "seed", column, "individual", "gap"]
    if frame.empty or not (frame.method == INDIVIDUAL).any() or is_individual(frame.method).all():
        return pd.DataFrame(columns=columns)
    key = ["split", "depth", "width", "seed"]
    ind = frame[frame.method == INDIVIDUAL].set_index(key)[column]
    ela = frame[~is_individual(frame.method)].copy()
    if reference == OWN_E:
        if not (frame.method == OWN_E).any():
            return pd.DataFrame(columns=columns)
        own = frame[frame.method == OWN_E].set_index(key)[column]
        ind = pd.concat([ind.drop(own.index, errors="ignore"), own])
        ela = ela[ela.method.str.endswith("@compute")]
    ela["individual"] = [ind.get((s, d, w, k)) for s, d, w, k in zip(ela.split, ela.depth, ela.width, ela.seed)]
    ela = ela.dropna(subset=["individual"])
    ela["individual"] = ela["individual"].astype(float)
    ela["gap"] = 100 * (ela[column] - ela["individual"])
    pooled = pooled_folds(ela, column)
    if pooled.empty:  # concatenating an empty frame would turn the numeric columns into objects (unrounded CSVs)
        return ela[columns].reset_index(drop=True)
    return pd.concat([ela[columns], pooled], ignore_index=True)


def paired_gaps(frame: pd.DataFrame, column: str, reference: str = INDIVIDUAL) -> pd.DataFrame:
    """Per split, elastic method and shape: the mean over seeds of :func:`seed_gaps` (elastic - individual, in
    Dice points) and its spread over seeds (``gap_sd``, sample standard deviation; blank with one seed)."""
    columns = ["split", "method", "depth", "width", "elastic", "individual", "gap", "gap_sd", "seeds"]
    per_seed = seed_gaps(frame, column, reference)
    if per_seed.empty:
        return pd.DataFrame(columns=columns)
    return (
        per_seed.groupby(["split", "method", "depth", "width"])
        .agg(
            elastic=(column, lambda x: 100 * x.mean()),
            individual=("individual", lambda x: 100 * x.mean()),
            gap=("gap", "mean"),
            gap_sd=("gap", "std"),
            seeds=("gap", "size"),
        )
        .reset_index()
    )


def gaps_by_seed(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """:func:`seed_gaps` as one row per split, method and shape, one column per seed (points, 2 decimals)."""
    per_seed = seed_gaps(frame, column)
    if per_seed.empty:
        return per_seed
    table = per_seed.pivot_table(index=["split", "method", "depth", "width"], columns="seed", values="gap")
    table.columns = [f"seed {k}" for k in table.columns]
    return table.round(2).reset_index()


def pooled_folds(ela: pd.DataFrame, column: str) -> pd.DataFrame:
    """The grouped folds as one test set: per method, shape and seed, the mean over the grouped folds of the
    elastic and individual values and of the paired gap, for the seeds that have every fold the method has
    (split ``grouped-f0+f1...``; at least two folds). One fold tests 5-6 of the 29 video sequences, too few for
    a 1-point verdict (``paper/parity_bootstrap.py``); the folds together test each of their sequences once."""
    folds = ela[ela.split.str.fullmatch(r"grouped-f\d+")]
    rows = []
    for method, mine in folds.groupby("method"):
        names = sorted(mine.split.unique())
        if len(names) < 2:
            continue
        label = "grouped-" + "+".join(n.removeprefix("grouped-") for n in names)
        for (depth, width, seed), g in mine.groupby(["depth", "width", "seed"]):
            if set(g.split) == set(names):
                rows.append(
                    {"split": label, "method": method, "depth": depth, "width": width, "seed": seed}
                    | {column: g[column].mean(), "individual": g.individual.mean(), "gap": g.gap.mean()}
                )
    return pd.DataFrame(rows, columns=["split", "method", "depth", "width", "seed", column, "individual", "gap"])


def fold_splits(split: str) -> list[str]:
    """The splits a (pooled) split name stands for: ``grouped-f0+f1`` -> grouped-f0, grouped-f1."""
    if "+" not in split:
        return [split]
    return ["grouped-" + f for f in split.removeprefix("grouped-").split("+")]


def protocol_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the verdict is made of: per split, its first TARGET_SEEDS seeds. A campaign may train more seeds
    later (more power for a small gap); adding seeds until a mean crosses the target would bend it, so they are
    reported beside the verdict (``gaps_more_seeds.csv``), never in it."""
    first = frame.groupby("split").seed.transform(lambda s: s.isin(sorted(s.unique())[:TARGET_SEEDS]))
    return frame[first.astype(bool)]


def more_seeds(frame: pd.DataFrame, verdict_gaps: pd.DataFrame) -> pd.DataFrame:
    """The paired test gaps over every seed, for the splits, methods and shapes that have more seeds than the
    verdict's (``verdict_gaps``, from :func:`protocol_seeds`)."""
    every = paired_gaps(frame, "dice").round(2)
    keys = ["split", "method", "depth", "width"]
    merged = every.merge(verdict_gaps[[*keys, "seeds"]].rename(columns={"seeds": "verdict_seeds"}), on=keys, how="left")
    return every[(merged.verdict_seeds.isna() | (merged.seeds > merged.verdict_seeds)).to_numpy()].reset_index(
        drop=True
    )


def targets(frame: pd.DataFrame, budget: dict[str, float]) -> pd.DataFrame:
    rows = []
    for reference in (INDIVIDUAL, OWN_E):
        rows += target_rows(frame, budget, reference)
    return pd.DataFrame(
        rows, columns=["split", "method", "comparison", "worst_gap", "mean_gap", "compute_ratio", "met"]
    )


def target_rows(frame: pd.DataFrame, budget: dict[str, float], reference: str) -> list[dict]:
    rows = []
    for (split, method), group in paired_gaps(frame, "dice", reference).groupby(["split", "method"]):
        ratios = [
            frame[(frame.split == s) & (frame.method == method)].groupby("seed").train_tflops.first().mean()
            * 1e12
            / budget[s]
            for s in fold_splits(split)
            if s in budget
        ]
        ratio = sum(ratios) / len(ratios) if ratios else float("nan")
        comparison = method.split("@")[-1]
        # a campaign half-way (a shape missing, or fewer than TARGET_SEEDS seeds) meets nothing
        complete = set(TABLE_SHAPES) <= set(zip(group.depth, group.width)) and group.seeds.min() >= TARGET_SEEDS
        met = complete and group.gap.min() >= TARGET and (comparison != "compute" or ratio <= COMPUTE_SHARE + 1e-9)
        rows.append(
            {
                "split": split,
                "method": method,
                "comparison": "equal "
                + comparison
                + (", individual nets at their own E" if reference == OWN_E else ""),
                "worst_gap": round(group.gap.min(), 2),
                "mean_gap": round(group.gap.mean(), 2),
                "compute_ratio": round(ratio, 3),
                "met": bool(met),
            }
        )
    return rows


def plot_gaps(gaps: pd.DataFrame, path: Path, per_seed: pd.DataFrame | None = None) -> None:
    """One panel per split (the random split, the grouped folds, then the folds pooled): each shape's mean paired
    test gap as a bar with its spread over seeds, each seed's own gap as a dot (``per_seed``,
    :func:`seed_gaps`), and the target as a red line. Only the shapes that have a gap are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = sorted(gaps.split.unique(), key=lambda s: (s != "random", "+" in s, s))
    shapes = [(d, w) for d in DEPTHS for w in WIDTHS if ((gaps.depth == d) & np.isclose(gaps.width, w)).any()]
    fig, axes = plt.subplots(
        1, len(splits), figsize=(max(4.0, 0.7 * len(shapes) + 1.5) * len(splits), 4), squeeze=False, sharey=True
    )
    for ax, split in zip(axes[0], splits):
        mine = gaps[gaps.split == split]
        methods = sorted(mine.method.unique())
        step = 0.8 / max(1, len(methods))
        for i, method in enumerate(methods):
            rows = mine[mine.method == method].set_index(["depth", "width"])
            m, sd = rows.gap, rows.gap_sd.fillna(0.0)  # the spread over seeds (none with one seed)
            at = {s: j - 0.4 + step * (i + 0.5) for j, s in enumerate(shapes) if s in m.index}
            bars = ax.bar(list(at.values()), [m[s] for s in at], step, yerr=[sd[s] for s in at], capsize=2)
            bars.set_label(method)
            if per_seed is not None and not per_seed.empty:
                dots = per_seed[(per_seed.split == split) & (per_seed.method == method)]
                xs = [at.get((d, w)) for d, w in zip(dots.depth, dots.width)]
                kept = [k for k, x in enumerate(xs) if x is not None]
                ax.scatter([xs[k] for k in kept], dots.gap.to_numpy()[kept], s=9, color="black", zorder=3)
        ax.axhline(TARGET, color="red", lw=0.8, ls="--")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(range(len(shapes)), [f"d{d}\nw{w:g}" for d, w in shapes], fontsize=7)
        ax.set_title(f"{split}", fontsize=9)
        ax.set_ylabel("test Dice, elastic - individual\n(points: mean ± sd over seeds; dots: seeds)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def ablation_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows the recipe ablation compares: per split, the seeds every elastic recipe has (a recipe run on
    more seeds must not be compared on their mean with others' single seed); all seeds where none is shared."""
    kept = []
    for _, rows in frame.groupby("split"):
        elastic = rows[~is_individual(rows.method)]
        common = set.intersection(*(set(g.seed) for _, g in elastic.groupby("method"))) if len(elastic) else set()
        kept.append(rows[rows.seed.isin(common)] if common else rows)
    return pd.concat(kept) if kept else frame


def write(args, runs: list[Run], budget: dict[str, float]) -> None:
    """Every table of ``args.out`` from the finished runs: summary.csv, targets.csv, ablation.csv, gaps.csv (and
    gaps_own_e.csv; both over the protocol's seeds, :func:`protocol_seeds`), gaps_more_seeds.csv where a split
    has more, their plots, and tables.md; each file replaced atomically."""
    frame = collect(args, runs)
    if frame.empty:
        print("no finished runs yet")
        return
    write_frame(
        frame.sort_values(["split", "method", "depth", "width", "seed"])[SUMMARY_COLUMNS], args.out / "summary.csv"
    )
    verdict = protocol_seeds(frame)
    goal = targets(verdict, budget)
    write_frame(goal, args.out / "targets.csv")
    ablation = ablation_table(frame)
    write_frame(ablation, args.out / "ablation.csv")
    test = paired_gaps(verdict, "dice").round(2)
    write_frame(test, args.out / "gaps.csv")
    if not test.empty:  # no elastic run has its individual counterparts yet: nothing to plot
        plot_gaps(test, args.out / "gaps.png", seed_gaps(verdict, "dice"))
    more = more_seeds(frame, test) if len(verdict) < len(frame) else pd.DataFrame()
    if not more.empty:
        write_frame(more, args.out / "gaps_more_seeds.csv")
    own = paired_gaps(verdict, "dice", OWN_E).round(2)
    if not own.empty:
        write_frame(own, args.out / "gaps_own_e.csv")
        plot_gaps(own, args.out / "gaps_own_e.png", seed_gaps(verdict, "dice", OWN_E))
    atomic_write_text(
        args.out / "tables.md",
        f"# Parity on CVC-ClinicDB, `{args.profile}` profile\n\n"
        f"Test Dice (%) per shape, mean over seeds, and the paired gap elastic - individual (points; `gap_sd`: its "
        f"standard deviation over seeds). Target: worst gap "
        f">= {TARGET:g} at equal compute (elastic training FLOPs <= {COMPUTE_SHARE:g} x the 12 individual trainings').\n\n"
        + md(test)
        + (
            "\n\n## Against the individual nets at their own E\n\nThe shapes still climbing at the profile's E "
            "trained again to their own convergence point (`convergence_epochs.csv`; `individual` is then that "
            "run), equal-compute recipes only:\n\n" + md(own)
            if not own.empty
            else ""
        )
        + (
            f"\n\n## With the seeds after the protocol's {TARGET_SEEDS}\n\nThe tables above and the targets are "
            f"over each split's first {TARGET_SEEDS} seeds (the protocol); seeds trained after them add evidence, "
            "here (mean over every seed):\n\n" + md(more)
            if not more.empty
            else ""
        )
        + "\n\n## Paired test gaps per seed (points; the gap above is the mean of the protocol's seeds)\n\n"
        + md(gaps_by_seed(frame, "dice"))
        + "\n\n## Targets\n\n"
        + md(goal)
        + "\n\n## Recipes on validation Dice (choose here, never on test; on the seeds every recipe has)\n\n"
        + md(ablation)
        + "\n",
    )


def ablation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per split and elastic recipe, on the seeds every recipe has: mean validation Dice over the grid and at full
    width, compute, epochs, seeds, and the worst and mean paired validation gap against the individual nets."""
    compared = ablation_seeds(frame)
    val = paired_gaps(compared, "val_dice")
    elastic = compared[~is_individual(compared.method)].assign(full=lambda f: f.width == 1.0)
    ablation = (
        elastic.groupby(["split", "method"])
        .agg(
            val_dice_all=("val_dice", lambda x: round(100 * x.mean(), 2)),
            val_dice_full_width=("val_dice", lambda x: round(100 * x[elastic.loc[x.index, "full"]].mean(), 2)),
            train_tflops=("train_tflops", "first"),
            epochs=("epochs", "first"),
            seeds=("seed", lambda x: ",".join(map(str, sorted(set(x))))),
        )
        .reset_index()
    )
    if not val.empty:
        gaps = val.groupby(["split", "method"]).agg(worst_val_gap=("gap", "min"), mean_val_gap=("gap", "mean")).round(2)
        ablation = ablation.merge(gaps.reset_index(), on=["split", "method"], how="left")
    return ablation


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as CSV (no index), replacing ``path`` atomically: an interrupted report leaves the old file."""
    atomic_write_text(path, frame.to_csv(index=False))


def md(frame: pd.DataFrame) -> str:
    return markdown_table(frame.to_dict("records")) if not frame.empty else "(none yet)"


def list_commands(args, argv: list[str] | None, trained: bool = True) -> None:
    """COMMANDS.md: every invocation that trained here (kept across invocations; ``trained`` False adds none,
    as for ``--report-only``), and each committed run's own command, commit and hardware (from its
    record.json), so run folders committed from another checkout are listed too."""
    invocation = script_command("parity_table.py", sys.argv[1:] if argv is None else argv)
    trainings = []
    for record_file in sorted((args.out / "runs").glob("*/seed*/*/record.json")):
        record = json.loads(record_file.read_text())
        if "command" in record:
            trainings.append(f"    {record['command']}\n      (commit {record['commit']}; {record['hardware']})")
    write_commands(
        args.out,
        [*invocations(args.out), *([invocation] if trained else [])],
        TRAININGS + " (each committed run's own command, from its record.json; runs recorded before\n"
        "record.json held the command are listed in the git history of this file):\n\n" + "\n".join(trainings) + "\n",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked before anything is written (one clear message for a mistake) and completed:
    lists for ``splits``, ``seeds``, ``arms``, ``comparisons``, ``shape_list``; ``out``; ``own_epochs``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--profile", default="converged")
    p.add_argument("--splits", default="random,grouped-f0,grouped-f1")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--arms", default="slimmable")
    p.add_argument("--comparisons", default="compute,epochs")
    p.add_argument("--shapes", default="all", choices=["all", "table"])
    p.add_argument(
        "--individual-e",
        default="profile",
        choices=["profile", "own"],
        help="own: also train the shapes still climbing at the profile's E to their own E (--own-e-table)",
    )
    p.add_argument(
        "--own-e-table",
        type=Path,
        default=ROOT / "results" / "cvc_clinicdb" / "converged" / "convergence_epochs.csv",
        help="each shape's own E, written by paper/convergence.py",
    )
    p.add_argument("--jobs", type=at_least(1), default=1)
    p.add_argument("--threads", type=at_least(0), default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "parity")
    p.add_argument("--out", type=Path, default=None, help="default results/cvc_clinicdb/PROFILE")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    if not Path(args.data).is_dir():
        raise UserError(f"--data {args.data} is not a folder; give the CVC-ClinicDB folder")
    args.data = str(Path(args.data).resolve())
    args.splits = [s for s in args.splits.split(",") if s]
    for split in args.splits:
        split_flags(split)
    args.seeds = seed_list(args.seeds)
    args.arms = [a for a in args.arms.split(",") if a]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        raise UserError(f"unknown arm(s) {unknown}; arms: {', '.join(ARMS)}")
    args.comparisons = [c for c in args.comparisons.split(",") if c]
    if set(args.comparisons) - {"epochs", "compute"}:
        raise UserError("--comparisons takes epochs and/or compute")
    args.shape_list = [(d, w) for d in DEPTHS for w in WIDTHS] if args.shapes == "all" else TABLE_SHAPES
    args.out = args.out or ROOT / "results" / "cvc_clinicdb" / args.profile
    check_out_folder(args.out)
    check_folder(args.runs)
    args.own_epochs = own_epochs(args.own_e_table) if args.individual_e == "own" else {}
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    runs, _ = plan(args)  # refuses an unknown profile or fold before anything is written
    if args.dry_run:
        print(progress(args, runs))
        return
    claim_out_folder(args.out)
    if not args.report_only:
        train_all(args, runs)
    list_commands(args, argv, trained=not args.report_only)
    # the tables cover every committed run, not only this invocation's: a run of one split or seed must not
    # drop the others from summary.csv, gaps.csv and the README's figures
    report = with_committed(args)
    write(report, *plan(report))
    print((args.out / "tables.md").read_text())


def train_all(args, runs: list[Run]) -> None:
    """Train (or resume, or reuse) every run, ``args.jobs`` at a time: seed by seed (an interrupted campaign still
    has whole seeds), the elastic training first, the longest first."""
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    todo = sorted(runs, key=lambda r: (r.seed, is_individual(r.method), -r.epochs))
    devices = DevicePool(args.device, args.jobs)
    run_pool(todo, args.jobs, lambda r, say: train_one(args, r, threads, devices, say))


def with_committed(args) -> argparse.Namespace:
    """``args`` widened to every split, seed, arm, comparison and individual shape committed under
    ``args.out/runs`` (runs of arms this version no longer defines are left out, with a note)."""
    splits, seeds, arms = list(args.splits), list(args.seeds), list(args.arms)
    comparisons, shapes, own = list(args.comparisons), list(args.shape_list), dict(args.own_epochs)
    for folder in sorted((args.out / "runs").glob("*/seed*/*")):
        if not done(folder):
            continue
        split, seed, name = folder.parts[-3], int(folder.parts[-2][4:]), folder.parts[-1]
        if "@" in name:
            arm, comparison = name.rsplit("@", 1)
            if arm not in ARMS:
                print(f"note: {folder} is a run of an arm this version does not define; left out of the tables")
                continue
            arms += [arm] if arm not in arms else []
            comparisons += [comparison] if comparison not in comparisons else []
        elif name.startswith("individual-d"):
            depth, width = name[len("individual-d") :].split("-e")[0].split("-w")
            shapes += [(int(depth), float(width))] if (int(depth), float(width)) not in shapes else []
            if "-e" in name and not own:  # runs at their own E: report them (their E from convergence_epochs.csv)
                own = own_epochs(args.own_e_table)
        else:
            continue
        splits += [split] if split not in splits else []
        seeds += [seed] if seed not in seeds else []
    return argparse.Namespace(
        **{**vars(args), "splits": splits, "seeds": sorted(seeds), "arms": arms, "comparisons": comparisons}
        | {"shape_list": shapes, "own_epochs": own}
    )


if __name__ == "__main__":
    run_script(main)
