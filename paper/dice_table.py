"""The Dice tables on CVC-ClinicDB: the originating study's experiment (Table 1) and our method (Table 2).

    python paper/dice_table.py --data PATH [--profile cpu|paper] [--table 1|2|all] \\
        [--split random,grouped] [--seeds 0,1,2] [--jobs N] [--device auto|cpu|cuda] [--dry-run] [--report-only]

Table 1 (the study): individually trained U-Nets of depth 3, 4 and 5 (full width) against one elastic
5-level U-Net trained with per-batch depth dropout (``uniform``) and cut to each depth.
Table 2 (ours): the same rows for ``sandwich``, ``sandwich+distill`` and ``sandwich+distill+privbn``
(BatchNorm per depth) elastic trainings over the whole grid depth {3,4,5} x width {0.25,0.5,0.75,1}, each
evaluated with BatchNorm statistics as trained and re-estimated per sub-net (``+calib``), and the whole
grid of the elastic training chosen on the validation images, against individually trained U-Nets at
(3,0.25), (3,1), (4,0.5), (4,1), (5,0.25), (5,1).

Every training is one ``elasticnet train`` run (``paper/cvc_clinicdb_study.yaml`` with the profile) in
``runs/dice_table/<profile>/<split>/seed<k>/<run>/`` (``--runs``); a finished run is reused, an interrupted one is
resumed, so an interrupted table continues where it stopped. An individual U-Net of width w is trained
as its own network with base width ``w * base_width`` (the same channels as the elastic sub-net). The
split (fold 0 of 5, by image for ``random``, by video sequence for ``grouped``) is the same for every
seed; the seed changes the initialisation, the data order, the augmentation and the sub-net draws.

Writes ``results/cvc_clinicdb/<profile>/``: summary.csv (one row per split, method, depth, width, seed:
test Dice and IoU, the mean over test images at threshold 0.5, and the training seconds of the run that
produced it), runs.csv (every training run: wall and training seconds, threads), table1.md/csv,
table2.md/csv, grid.md/csv, targets.md, table1.png, table2.png, grid.png, splits/<split>.csv,
COMMANDS.md (the commands, package version, git commit, hardware).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from dice_tables import (
    DEPTHS,
    TABLE2_METHODS,
    TARGET_POINTS,
    WIDTHS,
    Points,
    best_elastic,
    grid,
    plot,
    ratio_text,
    shortfall_text,
    table1,
    table2,
    time_ratios,
)
from runner import (
    MARK,
    ROOT,
    WALL_NAME,
    check_folder,
    check_same_recipe,
    claim_out_folder,
    git_commit,
    hardware_text,
    planned_tflops,
    run_logged,
    run_pool,
    script_command,
    seed_list,
    train_command,
    train_or_resume,
)

from elasticnet import __version__
from elasticnet.cli.arguments import at_least
from elasticnet.config import build_config
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.models.subnet import level_channels
from elasticnet.reporting import markdown_table, read_csv, write_csv
from elasticnet.runtime import DevicePool, with_device

CONFIG = str(ROOT / "paper" / "cvc_clinicdb_study.yaml")  # the studies' frozen base (its header says why)
# Individually trained U-Nets: Table 1 needs full width at every depth, Table 2 adds these shapes.
INDIVIDUAL = {"1": [(3, 1.0), (4, 1.0), (5, 1.0)], "2": [(3, 0.25), (3, 1.0), (4, 0.5), (4, 1.0), (5, 0.25), (5, 1.0)]}


@dataclass(frozen=True)
class Training:
    """One training run of the table: its name (= folder), method and the flags that make it."""

    name: str
    method: str  # "individual" or the elastic training's name
    flags: tuple[str, ...]
    shape: tuple[int, float] | None = None  # (depth, width) of an individual U-Net
    cost: float = 1.0  # rough relative cost, to start the longest first

    @property
    def elastic(self) -> bool:
        return self.method != "individual"


@dataclass
class Job:
    split: str
    seed: int
    training: Training
    folder: Path
    device: str
    command: list[str] = field(default_factory=list)


def trainings(table: str, base_width: int) -> list[Training]:
    """The training runs a table needs (``table`` is "1", "2" or "all")."""
    grid = ("--depths", ",".join(map(str, DEPTHS)), "--widths", ",".join(map(str, WIDTHS)))
    elastic = {
        "1": [
            Training("uniform", "uniform", ("--depths", "3,4,5", "--widths", "1", "--strategy", "uniform"), cost=0.8)
        ],
        "2": [
            Training("sandwich", "sandwich", (*grid, "--strategy", "sandwich"), cost=1.6),
            Training("sandwich+distill", "sandwich+distill", (*grid, "--strategy", "sandwich", "--distill"), cost=1.7),
            Training(
                "sandwich+distill+privbn",
                "sandwich+distill+privbn",
                (*grid, "--strategy", "sandwich", "--distill", "--bn-mode", "per_depth"),
                cost=1.7,
            ),
        ],
    }
    tables = ("1", "2") if table == "all" else (table,)
    shapes = sorted({s for t in tables for s in INDIVIDUAL[t]})
    runs = [individual(depth, width, base_width) for depth, width in shapes]
    runs += [t for name in tables for t in elastic[name]]
    return runs


def individual(depth: int, width: float, base_width: int) -> Training:
    """A U-Net of one shape trained on its own: base width ``width * base_width``, nothing elastic."""
    base = round(base_width * width)
    if level_channels(base, depth) != level_channels(base_width, depth, width):
        raise UserError(
            f"base width {base_width} x {width} gives other channels than the elastic sub-net "
            f"({level_channels(base, depth)} vs {level_channels(base_width, depth, width)})"
        )
    return Training(
        individual_name(depth, width),
        "individual",
        ("--depths", str(depth), "--widths", "1", "--base-width", str(base)),
        shape=(depth, width),
        cost=depth / 5 * max(width, 0.2),
    )


def individual_name(depth: int, width: float) -> str:
    return f"individual-d{depth}-w{width:g}"


def split_flags(split: str) -> tuple[str, ...]:
    return ("--split", split, "--folds", "5", "--fold", "0")


def plan(args, base_width: int) -> list[Job]:
    jobs = []
    for split in args.splits:
        for seed in args.seeds:
            for t in trainings(args.table, base_width):
                if args.only and t.name not in args.only:
                    continue
                folder = Path(args.runs) / args.name / split / f"seed{seed}" / t.name
                flags = [
                    *split_flags(split),
                    "--seed",
                    str(seed),
                    *t.flags,
                    *(["--epochs", str(args.epochs)] if args.epochs else []),
                    *(["--lr", f"{args.lr:g}"] if args.lr else []),
                ]
                command = train_command(args.config, args.profile, args.data, flags, args.device, folder)
                jobs.append(Job(split, seed, t, folder, args.device, command))
    return jobs


def finished(job: Job) -> bool:
    return (job.folder / "checkpoint.pt").is_file() and (job.folder / "subnets.csv").is_file()


def run_job(job: Job, threads: int, say, devices: DevicePool | None = None) -> None:
    """Train (or resume) one run on a device of ``devices``; its output goes to RUN/train.log; wall seconds add
    up over attempts."""
    if finished(job):
        check_same_recipe(job.command, job.folder)
        return
    if devices is not None:
        with devices.take() as device:
            return run_job(
                dataclasses.replace(job, device=device, command=with_device(job.command, device)), threads, say
            )
    say(f"start {job.split}/seed{job.seed}/{job.training.name}")
    wall = train_or_resume(job.command, job.folder, threads, job.folder / "train.log", job.device)
    say(f"done  {job.split}/seed{job.seed}/{job.training.name} in {wall:.0f} s")


def recalibrate_job(job: Job, threads: int, say) -> None:
    """Re-evaluate a finished run with this version's BN re-estimation (`elasticnet eval --recalibrate`), once."""
    marker = job.folder / "recalibrated.json"
    if marker.exists():
        return
    start = time.perf_counter()
    command = [sys.executable, "-m", "elasticnet", "eval", "--checkpoint", str(job.folder), "--recalibrate"]
    run_logged([*command, "--device", job.device], threads, job.folder / "train.log", f"recalibrating {job.folder}")
    record = {"elasticnet": __version__, "commit": git_commit(), "seconds": round(time.perf_counter() - start, 1)}
    atomic_write_text(marker, json.dumps(record))
    say(f"done  recalibrating {job.split}/seed{job.seed}/{job.training.name}")


def run_all(jobs: list[Job], workers: int, threads: int) -> None:
    # seed by seed (a table interrupted late still has whole seeds), the longest trainings first
    todo = sorted((j for j in jobs if not finished(j)), key=lambda j: (j.seed, -j.training.cost))
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} runs finished already; training {len(todo)} "
        f"({workers} at a time, {threads} thread(s) each)",
        flush=True,
    )
    devices = DevicePool(todo[0].device if todo else "cpu", workers)
    run_pool(todo, workers, lambda job, say: run_job(job, threads, say, devices))


# ---- collecting the results ----


def run_record(job: Job) -> dict:
    log = read_csv(job.folder / "log.csv")
    wall = json.loads((job.folder / WALL_NAME).read_text()) if (job.folder / WALL_NAME).exists() else {}
    return {
        "split": job.split,
        "seed": job.seed,
        "run": job.training.name,
        "method": job.training.method,
        "epochs": len(log),
        "train_seconds": round(sum(float(r["seconds"]) for r in log), 4),
        "wall_seconds": wall.get("wall_seconds", ""),
        "threads": wall.get("threads", ""),
    }


def summary_rows(jobs: list[Job]) -> tuple[list[dict], list[dict], list[dict]]:
    """(summary rows on the test images, the same on the validation images, one record per run)."""
    test, val, records = [], [], []
    for job in jobs:
        record = run_record(job)
        records.append(record)
        for row in read_csv(job.folder / "subnets.csv"):
            depth, width = int(row["depth"]), float(row["width"])
            if job.training.elastic:
                variants = [(job.training.method, "_bn_as_trained"), (job.training.method + "+calib", "")]
            else:  # a plain U-Net: evaluated, as usual, with the running BN statistics of its training
                depth, width = job.training.shape
                variants = [("individual", "_bn_as_trained")]
            for method, suffix in variants:
                common = {"split": job.split, "method": method, "depth": depth, "width": width, "seed": job.seed}
                test.append(
                    common
                    | {
                        "dice": float(row[f"test_dice{suffix}"]),
                        "iou": float(row.get(f"test_iou{suffix}") or "nan"),
                        "train_seconds": record["train_seconds"],
                    }
                )
                val.append(common | {"dice": float(row[f"dice{suffix}"])})
    return test, val, records


# ---- writing ----


def write_results(args, jobs: list[Job], out: Path, wall: float) -> None:
    """Write every file of the results folder ``out`` from the finished runs among ``jobs``."""
    done = [j for j in jobs if finished(j)]
    test, val, records = summary_rows(done)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(test, out / "summary.csv")
    write_csv(records, out / "runs.csv")
    copy_splits(args.splits, done, out / "splits")
    points = Points(pd.DataFrame(test))
    md: dict[str, str] = {}
    chosen: dict[str, str] = {}  # per split, the elastic method of the grid (chosen on validation Dice)
    if args.table in ("1", "all"):
        md["table1"] = write_table1(args, points, out)
    if args.table in ("2", "all"):
        chosen = {s: best_elastic(pd.DataFrame(val), s) for s in args.splits}
        md["table2"] = write_table2(args, points, out)
        md["grid"] = write_grid(args, points, chosen, out)
    md["targets"] = targets_text(args, points, pd.DataFrame(records), chosen)
    hardware = hardware_text(args.device)
    for name, text in md.items():
        atomic_write_text(out / f"{name}.md", text)
    atomic_write_text(
        out / "tables.md",
        f"# CVC-ClinicDB Dice tables, `{args.profile}` profile"
        f"{f', {args.epochs} epochs' if args.epochs else ''}"
        f"{f', learning rate {args.lr:g}' if args.lr else ''}\n\n"
        f"Test images: fold 0 of 5 (see `splits/`). {hardware}\n\n" + "\n\n".join("#" + part for part in md.values()),
    )
    write_mark(args, jobs, records, hardware, wall, out)


def copy_splits(splits: list[str], done: list[Job], folder: Path) -> None:
    """The image split of each split name, from its first finished run (every seed of a split shares it)."""
    folder.mkdir(exist_ok=True)
    for split in splits:
        first = next((j for j in done if j.split == split), None)
        if first is not None:
            shutil.copyfile(first.folder / "split.csv", folder / f"{split}.csv")


def write_table1(args, points: Points, out: Path) -> str:
    """table1.csv and table1.png (the study's experiment); returns its Markdown."""
    return write_full_width_table(
        args,
        points,
        out / "table1",
        table1,
        ["individual", "uniform", "uniform+calib"],
        f"Table 1, CVC-ClinicDB, {args.name}: individual vs uniform depth dropout",
        "# Table 1: the originating study's experiment\n\nTest Dice (%), mean ± sd over seeds "
        f"{','.join(map(str, args.seeds))}. `uniform`: one elastic 5-level U-Net, depth drawn per batch (the "
        "study's method), BN statistics as trained; `+calib`: re-estimated per sub-net. The study's numbers "
        "(random split, full resolution) for reference.\n\n",
    )


def write_table2(args, points: Points, out: Path) -> str:
    """table2.csv and table2.png (our elastic trainings at full width); returns its Markdown."""
    return write_full_width_table(
        args,
        points,
        out / "table2",
        table2,
        list(TABLE2_METHODS),
        f"Table 2, CVC-ClinicDB, {args.name}: elastic trainings at full width",
        "# Table 2: our elastic trainings, full width\n\nTest Dice (%), mean ± sd over seeds. Every elastic "
        "column is one training over the whole grid depth {3,4,5} x width {0.25,0.5,0.75,1}, cut to the "
        "row's depth at width 1; `+calib`: BN statistics re-estimated per sub-net on 16 training batches; "
        "`privbn`: BatchNorm per depth.\n\n",
    )


def write_full_width_table(args, points: Points, stem: Path, rows_of, methods: list[str], title: str, head: str) -> str:
    """``stem``.csv (the rows ``rows_of(points, split)`` of every split) and ``stem``.png (``methods`` at full
    width, per depth); returns ``head`` and the rows as Markdown."""
    rows = [{"split": s} | r for s in args.splits for r in rows_of(points, s)]
    write_csv(rows, stem.with_suffix(".csv"))
    plot(points, args.splits, methods, [(d, 1.0) for d in DEPTHS], stem.with_suffix(".png"), title)
    return head + markdown_table(rows)


def write_grid(args, points: Points, chosen: dict[str, str], out: Path) -> str:
    """grid.csv and grid.png (the whole grid of the ``chosen`` elastic training per split against the individual
    U-Nets); returns its Markdown."""
    rows = [row for s in args.splits for row in grid(points, s, chosen[s])]
    write_csv(rows, out / "grid.csv")
    plot(
        points,
        args.splits,
        ["individual", *sorted(set(chosen.values()))],
        [(d, w) for d in DEPTHS for w in WIDTHS],
        out / "grid.png",
        f"One elastic training vs individual U-Nets, CVC-ClinicDB, {args.name}",
    )
    return (
        "# Table 2, the whole grid from one elastic training\n\nThe elastic training and evaluation chosen "
        "per split by the highest mean validation Dice over the grid (never by test Dice), against the "
        f"individually trained U-Nets. Target: difference >= -{TARGET_POINTS:g} point.\n\n" + markdown_table(rows)
    )


def write_mark(args, jobs: list[Job], records: list[dict], hardware: str, wall: float, out: Path) -> None:
    """COMMANDS.md: this invocation, the package version and commit, the hardware, the seconds, and every
    planned training's command (finished or not)."""
    commands = "\n".join(" ".join(["python", *j.command[1:]]) for j in jobs).replace(f"{ROOT}/", "")
    seconds = (
        ""
        if args.report_only
        else f"Wall time of this invocation: {wall:.0f} s (runs reused from earlier invocations not included). "
    )
    atomic_write_text(
        out / MARK,
        f"# How these results were made\n\n```\n{script_command('dice_table.py', args.argv)}\n```\n\n"
        f"elasticnet {__version__}, git commit {git_commit()}\n\n{hardware}\n\n{seconds}"
        f"Sum of the {len(records)} runs' wall seconds (`runs.csv`, each run's own): "
        f"{sum(float(r['wall_seconds'] or 0) for r in records):.0f} s.\n\nThe training runs (each also resumable with "
        "`elasticnet train --resume RUN`):\n\n```\n" + commands + "\n```\n",
    )


def targets_text(args, points: Points, records: pd.DataFrame, chosen: dict[str, str]) -> str:
    lines = ["# Targets"]
    for split in args.splits:
        if chosen.get(split):
            lines.append(shortfall_text(points, split, chosen[split]))
        if args.table in ("1", "all"):
            ratio = time_ratios(records, split, "uniform", [individual_name(d, 1.0) for d in DEPTHS])
            lines.append(
                f"- {split}: `uniform` training time / sum of the 3 individual U-Nets it replaces: " + ratio_text(ratio)
            )
        if args.table in ("2", "all"):
            for method in ("sandwich+distill", "sandwich+distill+privbn"):
                names = [individual_name(d, w) for d, w in INDIVIDUAL["2"]]
                ratio = time_ratios(records, split, method, names)
                lines.append(
                    f"- {split}: `{method}` training time / sum of the {len(names)} individual U-Nets "
                    f"trained here (it replaces 12): " + ratio_text(ratio)
                )
    return "\n".join(lines) + "\n"


def write_plan(jobs: list[Job], path: Path) -> None:
    """Every training's planned steps and TFLOPs (on a GPU), and the table's total."""
    rows = []
    for job in jobs:
        steps, tflops = planned_tflops(job.command, "cuda")
        rows.append({"split": job.split, "seed": job.seed, "name": job.training.name, "steps": steps, "tflops": tflops})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv([{**r, "tflops": round(r["tflops"], 2)} for r in rows], path)
    print(f"{len(rows)} trainings, {sum(r['tflops'] for r in rows):.0f} TFLOPs in all; wrote {path}")


def check_keeps_results(out: Path, jobs: list[Job], args) -> None:
    """Refuse (:class:`UserError`), before any work, to rewrite the tables of ``out`` without a run they were made
    from (``out``'s runs.csv): a table is written from the finished runs under ``--runs``, and the runs of committed
    tables may not be on this machine. With ``--report-only``, refuse too when no run is finished."""
    ready = [j for j in jobs if finished(j)] if args.report_only else jobs
    have = {(j.split, str(j.seed), j.training.name) for j in ready}
    known = read_csv(out / "runs.csv") if (out / "runs.csv").is_file() else []
    lost = [f"{r['split']}/seed{r['seed']}/{r['run']}" for r in known if (r["split"], r["seed"], r["run"]) not in have]
    if lost:
        raise UserError(
            f"{out} holds tables made from {len(lost)} run(s) that this command would leave out (e.g. {lost[0]}: "
            f"{'not finished under' if args.report_only else 'not planned with'} --runs {args.runs}); give --runs "
            "the folder that holds them (with the same --split/--seeds/--only), or --out a new folder"
        )
    if args.report_only and not ready:
        raise UserError(
            f"--report-only: no finished run under --runs {args.runs}; train the table first (without "
            "--report-only), or give --runs the folder that holds its runs"
        )


def train_and_recalibrate(args, jobs: list[Job]) -> None:
    """Train (or resume) every unfinished run; with ``--recalibrate``, then re-estimate the BN statistics of the
    finished elastic runs not yet recalibrated."""
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if args.device.startswith("cuda") else max(1, cores // args.jobs))
    run_all(jobs, args.jobs, threads)
    if args.recalibrate:
        # a plain U-Net is reported with its BN statistics as trained: nothing to recalibrate
        todo = [j for j in jobs if j.training.elastic and finished(j) and not (j.folder / "recalibrated.json").exists()]
        print(f"recalibrating {len(todo)} runs", flush=True)
        run_pool(todo, args.jobs, lambda job, say: recalibrate_job(job, threads, say))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (one clear message for a mistake) and completed: ``splits``, ``seeds``, ``only``
    as lists, ``name`` (the profile with the ablation's suffixes), ``config`` and ``data`` resolved."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="the CVC-ClinicDB folder (PNG or official TIFF layout)")
    p.add_argument("--config", default=CONFIG, help="experiment config (default %(default)s)")
    p.add_argument("--profile", default="cpu", help="profile of the config (cpu | paper)")
    p.add_argument("--table", default="all", choices=["1", "2", "all"])
    p.add_argument(
        "--split", default="random,grouped", help="comma-separated: random (by image), grouped (by sequence)"
    )
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--jobs", type=at_least(1), default=1, help="trainings at a time (CPU: threads split between them)")
    p.add_argument("--threads", type=at_least(0), default=0, help="threads per training (default: CPU cores / jobs)")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default="", help="results folder (default results/cvc_clinicdb/PROFILE)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "dice_table"), help="training runs (default %(default)s)")
    p.add_argument(
        "--epochs",
        type=int,
        default=0,
        help="train this many epochs instead of the profile's (an "
        "ablation of training length; runs and results go to PROFILE-eN)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=0.0,
        help="learning rate instead of the profile's (a sweep; runs and results go to PROFILE[-eN]-lrX)",
    )
    p.add_argument("--only", default="", help="comma-separated training names to run (e.g. individual-d5-w1,uniform)")
    p.add_argument(
        "--recalibrate",
        action="store_true",
        help="re-estimate the BN statistics of finished runs with this version of elasticnet (once per run; "
        "for runs evaluated by an older version), then write the tables",
    )
    p.add_argument("--dry-run", action="store_true", help="print the training commands and stop")
    p.add_argument(
        "--plan",
        action="store_true",
        help="write the trainings' planned steps and TFLOPs (counted from the recipe, for a GPU's channel "
        "multiple) to OUT/plan.csv and stop: `benchmarks/gpu_check.py` projects the table's time from it",
    )
    p.add_argument("--report-only", action="store_true", help="write the tables from the finished runs; train nothing")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.splits = [s for s in args.split.split(",") if s]
    args.only = [s for s in args.only.split(",") if s]
    args.name = args.profile + (f"-e{args.epochs}" if args.epochs else "") + (f"-lr{args.lr:g}" if args.lr else "")
    args.seeds = seed_list(args.seeds)
    if not Path(args.data).is_dir():
        raise UserError(
            f"--data {args.data} is not a folder; give the CVC-ClinicDB folder (images/ and masks/, "
            "or Original/ and Ground Truth/)"
        )
    if set(args.splits) - {"random", "grouped"}:
        raise UserError(f"--split takes random and/or grouped, got {args.split}")
    args.config, args.data = str(Path(args.config).resolve()), str(Path(args.data).resolve())
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base = build_config(args.config, {"data": args.data}, args.profile)  # refuses an unknown profile
    jobs = plan(args, base.model.base_width)
    if args.dry_run:
        print("\n".join(" ".join(j.command) for j in jobs))
        return
    out = Path(args.out) if args.out else ROOT / "results" / "cvc_clinicdb" / args.name
    check_folder(Path(args.runs))
    if not args.plan:
        check_keeps_results(out, jobs, args)
    claim_out_folder(out)
    if args.plan:
        write_plan(jobs, out / "plan.csv")
        return
    start = time.perf_counter()
    if not args.report_only:
        train_and_recalibrate(args, jobs)
    write_results(args, jobs, out, time.perf_counter() - start)
    print((out / "tables.md").read_text())
    print(f"wrote {out}/")


if __name__ == "__main__":
    run_script(main)
