"""Does bf16 training cost Dice? The same seeds trained in bf16 and in fp32 on CVC-ClinicDB, paired.

    python paper/precision_parity.py --data PATH [--seeds 0,1,2] [--runs runs/precision_parity] [--report-only]

Each seed trains the CVC ``cpu`` profile (random split, fold 0) with ``--strategy sandwich --widths
0.25,0.5,0.75,1`` twice, ``--amp bf16`` and ``--amp none`` (fp32), into ``RUNS/seed<k>/<precision>/``
(finished runs are reused). bf16 needs a CPU with AVX512_BF16/AMX or a GPU; the script refuses emulated bf16.

Noise: the paired difference (bf16 - fp32, test Dice of each of the 12 sub-nets) is compared with the
seed-to-seed spread of fp32 itself (the sd over seeds of one sub-net's fp32 Dice, averaged over sub-nets):
bf16 is "within noise" when the mean paired difference over seeds and sub-nets lies within one standard
error of the paired differences of zero, and every sub-net's mean difference lies within the fp32 seed sd.

Writes ``results/cvc_clinicdb/cpu-precision/``: parity.csv (one row per seed, precision, sub-net: test and
validation Dice, training seconds and images/s), summary.md (per sub-net means, paired differences, the
verdict), COMMANDS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
from pathlib import Path

from checkout import ROOT
from runner import check_folder, check_out_folder, claim_out_folder, seed_list, train_command

from elasticnet import hardware
from elasticnet.cli.arguments import at_least
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, read_csv, write_csv

PRECISIONS = {"bf16": "bf16", "fp32": "none"}


def command(data: str, seed: int, amp: str, out: Path) -> list[str]:
    flags = ["--split", "random", "--folds", "5", "--fold", "0", "--strategy", "sandwich"]
    flags += ["--widths", "0.25,0.5,0.75,1", "--seed", str(seed), "--amp", amp]
    return train_command(ROOT / "paper" / "cvc_clinicdb_study.yaml", "cpu", data, flags, "auto", out)


def collect(runs: Path, seeds: list[int]) -> list[dict]:
    rows = []
    for seed in seeds:
        for name in PRECISIONS:
            folder = runs / f"seed{seed}" / name
            if not (folder / "subnets.csv").is_file():
                continue
            log = read_csv(folder / "log.csv")
            seconds = sum(float(r["seconds"]) for r in log)
            images = sum(float(r["images_per_s"]) * float(r["seconds"]) for r in log)
            for r in read_csv(folder / "subnets.csv"):
                rows.append(
                    {
                        "seed": seed,
                        "precision": name,
                        "depth": int(r["depth"]),
                        "width": float(r["width"]),
                        "test_dice": float(r["test_dice"]),
                        "val_dice": float(r["dice"]),
                        "train_seconds": round(seconds, 1),
                        "images_per_s": round(images / seconds, 1),
                    }
                )
    return rows


def summary(rows: list[dict]) -> tuple[list[dict], str]:
    shapes = sorted({(r["depth"], r["width"]) for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    dice = {(r["seed"], r["precision"], r["depth"], r["width"]): 100 * r["test_dice"] for r in rows}
    table, diffs, sds = [], [], []
    for shape in shapes:
        paired = [
            dice[(s, "bf16", *shape)] - dice[(s, "fp32", *shape)]
            for s in seeds
            if (s, "bf16", *shape) in dice and (s, "fp32", *shape) in dice
        ]
        fp32 = [dice[(s, "fp32", *shape)] for s in seeds if (s, "fp32", *shape) in dice]
        bf16 = [dice[(s, "bf16", *shape)] for s in seeds if (s, "bf16", *shape) in dice]
        if not paired:
            continue
        sd = statistics.stdev(fp32) if len(fp32) > 1 else float("nan")
        diffs += paired
        sds.append(sd)
        table.append(
            {
                "depth": shape[0],
                "width": shape[1],
                "seeds": len(paired),
                "fp32": f"{statistics.mean(fp32):.1f}",
                "bf16": f"{statistics.mean(bf16):.1f}",
                "bf16 - fp32": f"{statistics.mean(paired):+.1f}",
                "fp32 seed sd": f"{sd:.1f}",
                "within sd": "yes" if abs(statistics.mean(paired)) <= sd else "no",
            }
        )
    if not diffs:
        return table, "no paired runs yet"
    mean = statistics.mean(diffs)
    se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else float("nan")
    per_shape = all(row["within sd"] == "yes" for row in table)
    verdict = (
        f"mean paired difference bf16 - fp32 over {len(diffs)} (seed, sub-net) pairs: {mean:+.2f} Dice points "
        f"(standard error {se:.2f}); mean fp32 seed sd per sub-net {statistics.mean(sds):.2f}. "
        f"{'Within noise' if abs(mean) <= max(se, 1e-9) * 1.96 and per_shape else 'NOT within noise'} "
        "(criterion: |mean| <= 1.96 standard errors, and every sub-net's mean difference within its fp32 seed sd)."
    )
    return table, verdict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="", help="the CVC-ClinicDB folder (needed unless --report-only)")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", default=str(ROOT / "runs" / "precision_parity"))
    p.add_argument("--out", default=str(ROOT / "results" / "cvc_clinicdb" / "cpu-precision"))
    p.add_argument("--threads", type=at_least(0), default=0, help="threads per training (default: torch's)")
    p.add_argument("--report-only", action="store_true")
    args = p.parse_args(argv)
    args.seeds, args.runs, args.out = seed_list(args.seeds), Path(args.runs), Path(args.out)
    return args


def check_keeps_results(out: Path, have: set[tuple[int, str]], runs: Path) -> None:
    """Refuse (:class:`UserError`), before any work, to rewrite ``out``'s parity.csv without a (seed, precision)
    it holds: the committed table's runs need not be on this machine."""
    known = read_csv(out / "parity.csv") if (out / "parity.csv").is_file() else []
    lost = sorted({(int(r["seed"]), r["precision"]) for r in known} - have)
    if lost:
        seed, name = lost[0]
        raise UserError(
            f"{out} holds results of {len(lost)} run(s) that this command would leave out (e.g. seed {seed} "
            f"{name}, not under --runs {runs} or not in --seeds); give --runs the folder that holds them and "
            "their --seeds, or --out a new folder"
        )


def train_missing(args) -> list[str]:
    """Train every (seed, precision) run not finished under ``args.runs``; returns every run's command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    commands = []
    for seed in args.seeds:
        for name, amp in PRECISIONS.items():
            folder = args.runs / f"seed{seed}" / name
            cmd = command(args.data, seed, amp, folder)
            commands.append(" ".join(cmd[1:]))
            if (folder / "checkpoint.pt").is_file():
                continue
            print(f"training seed {seed} {name} ...", flush=True)
            done = subprocess.run(cmd, cwd=ROOT, env=env)
            if done.returncode != 0:
                raise SystemExit(f"training {folder} failed (exit {done.returncode})")
    return commands


def write_report(out: Path, rows: list[dict], commands: list[str]) -> None:
    table, verdict = summary(rows)
    write_csv(rows, out / "parity.csv")
    speed = {
        name: statistics.mean(r["images_per_s"] for r in rows if r["precision"] == name)
        for name in PRECISIONS
        if any(r["precision"] == name for r in rows)
    }
    atomic_write_text(
        out / "summary.md",
        (
            "# bf16 vs fp32 training, CVC-ClinicDB `cpu` profile, sandwich over depth {3,4,5} x width {0.25,0.5,0.75,1}\n\n"
            f"CPU: {hardware.cpu_summary()}\n\nTest Dice (%) of every sub-net (random split, fold 0, 123 test frames), "
            "mean over seeds; paired difference per seed.\n\n" + markdown_table(table) + f"\n\n{verdict}\n\n"
            "Training speed (images/s from log.csv, mean over runs): "
            + ", ".join(f"{k} {v:.1f}" for k, v in speed.items())
            + "\n"
        ),
    )
    if commands:
        atomic_write_text(out / "COMMANDS.md", "# Commands\n\n" + "\n".join(f"    {c}" for c in commands) + "\n")
    print(markdown_table(table))
    print(verdict)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    check_out_folder(args.out)
    check_folder(args.runs)
    if args.report_only:
        rows = collect(args.runs, args.seeds)
        if not rows:
            raise UserError(f"--report-only: no finished runs under --runs {args.runs}; train them first")
        check_keeps_results(args.out, {(r["seed"], r["precision"]) for r in rows}, args.runs)
    else:
        if not args.data or not Path(args.data).is_dir():
            raise UserError("--data must name the CVC-ClinicDB folder (or use --report-only)")
        if not hardware.native_bf16_cpu():
            raise UserError(
                f"this CPU has no native bf16 ({hardware.cpu_summary()}); the comparison would time "
                "emulated bf16. Run it on a CPU with AVX512_BF16/AMX, or --report-only"
            )
        check_keeps_results(args.out, {(s, name) for s in args.seeds for name in PRECISIONS}, args.runs)
    claim_out_folder(args.out)
    commands = [] if args.report_only else train_missing(args)
    write_report(args.out, collect(args.runs, args.seeds), commands)


if __name__ == "__main__":
    run_script(main)
