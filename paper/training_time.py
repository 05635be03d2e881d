"""The training-time table: wall time per epoch and to a target Dice, for 1..N data-parallel processes.

    python paper/training_time.py --config experiments/synthetic.yaml --processes 1,2 --target-dice 0.6 \\
        --name synthetic-cpu [--device cpu|cuda] [--scaling strong|weak] [-- EXTRA TRAIN FLAGS]

For each process count it trains the config once (``torchrun --standalone`` for more than one process;
threads per process = CPU cores / processes on CPUs, one GPU per process on GPUs) into
``runs/training_time/NAME/pN`` and reads the run's log: training seconds per epoch (median; the
per-epoch validation is not included), training seconds until the largest sub-net's validation Dice first
reached the target, total wall time of the command, and the final Dice. ``--scaling strong`` (default)
keeps the global batch (per-process batch = batch_size / N, the same optimisation as one process);
``weak`` keeps the per-process batch. Finished runs are reused, so an interrupted table resumes.

Writes ``results/training_time/NAME/``: table.csv, table.md (with the hardware and the training commands),
seconds_per_epoch.png and COMMANDS.md (the invocations of this script).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from checkout import ROOT
from runner import check_folder, claim_out_folder, note_invocation, number_list, script_command

from elasticnet.config import build_config
from elasticnet.errors import UserError, run_script
from elasticnet.export.measure import machine
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, read_csv, save_figure, write_csv


def command_for(n: int, args, extra: list[str], out: Path, batch: int) -> list[str]:
    train = [
        "-m",
        "elasticnet",
        "train",
        "--config",
        args.config,
        *(["--profile", args.profile] if args.profile else []),
        "--device",
        args.device,
        "--batch-size",
        str(batch),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    if n == 1:
        return [sys.executable, *train]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n), *train]


def read_log(run: Path) -> list[dict]:
    return [{k: float(v) for k, v in row.items()} for row in read_csv(run / "log.csv")]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--profile")
    p.add_argument("--processes", type=number_list(int, "1,2,4"), default="1,2", help="comma-separated process counts")
    p.add_argument("--target-dice", type=float, required=True, help="validation Dice of the largest sub-net to reach")
    p.add_argument("--name", required=True, help="table name: results/training_time/NAME")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--scaling", default="strong", choices=["strong", "weak"])
    p.add_argument("--out", type=Path, help="results folder (default results/training_time/NAME)")
    p.add_argument("--runs", type=Path, help="training runs (default runs/training_time/NAME)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = p.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    if args.name in ("", ".", "..") or Path(args.name).name != args.name:
        raise UserError(f"--name {args.name!r}: give a plain folder name (results/training_time/NAME), e.g. cpu-2x")
    cfg = build_config(args.config, {}, args.profile)
    cores = os.cpu_count() or 1
    runs_dir = args.runs or ROOT / "runs" / "training_time" / args.name
    out_dir = args.out or ROOT / "results" / "training_time" / args.name
    check_folder(runs_dir)
    claim_out_folder(out_dir, "--out" if args.out else "--name")
    rows, commands = [], []
    for n in args.processes:
        batch = cfg.train.batch_size // n if args.scaling == "strong" else cfg.train.batch_size
        if batch < 1 or (args.scaling == "strong" and cfg.train.batch_size % n):
            raise SystemExit(f"batch_size {cfg.train.batch_size} does not split over {n} processes")
        run = runs_dir / f"p{n}"
        command = command_for(n, args, extra, run, batch)
        threads = 1 if args.device == "cuda" else max(1, cores // n)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        commands.append(f"OMP_NUM_THREADS={threads} " + " ".join(["python", *command[1:]]).replace(f"{ROOT}/", ""))
        timing = run / "wall_seconds.json"
        if not (run / "checkpoint.pt").exists():
            print(f"training with {n} process(es): {' '.join(command)}", flush=True)
            start = time.perf_counter()
            done = subprocess.run(command, env=env, cwd=ROOT)
            if done.returncode:
                raise SystemExit(f"training with {n} process(es) failed (exit {done.returncode}); its output is above")
            timing.write_text(json.dumps({"wall_seconds": time.perf_counter() - start}))
        else:
            print(f"reusing {run}", flush=True)
        log = read_log(run)
        seconds = [r["seconds"] for r in log]
        elapsed, to_target = 0.0, None
        for r in log:
            elapsed += r["seconds"]
            if to_target is None and r["val_dice_largest"] >= args.target_dice:
                to_target = elapsed
        rows.append(
            {
                "device": args.device,
                "processes": n,
                "threads_per_process": threads,
                "batch_per_process": batch,
                "global_batch": batch * n,
                "epochs": len(log),
                "s_per_epoch": round(statistics.median(seconds), 1),
                "s_to_target": round(to_target, 1) if to_target is not None else "not reached",
                "train_s": round(sum(seconds), 1),
                "wall_s": round(json.loads(timing.read_text())["wall_seconds"], 1) if timing.exists() else "",
                "final_val_dice_largest": log[-1]["val_dice_largest"],
            }
        )
    write_csv(rows, out_dir / "table.csv")
    import torch

    hardware = f"{machine()}; {platform.platform()}; torch {torch.__version__}" + (
        f"; GPU {torch.cuda.get_device_name(0)}" if args.device == "cuda" and torch.cuda.is_available() else ""
    )
    atomic_write_text(
        out_dir / "table.md",
        f"# Training time: {args.name}\n\nConfig `{args.config}`{f' profile `{args.profile}`' if args.profile else ''}, "
        f"{args.scaling} scaling, target: validation Dice of the largest sub-net >= {args.target_dice}. "
        f"Seconds are training time (per-epoch validation excluded); wall_s is the whole command.\n\n"
        f"Hardware: {hardware}\n\n" + markdown_table(rows) + "\n\nCommands:\n\n```\n" + "\n".join(commands) + "\n```\n",
    )
    note_invocation(out_dir, script_command("training_time.py", argv))
    _plot(rows, out_dir / "seconds_per_epoch.png", args.name)
    print(markdown_table(rows))
    print(f"wrote {out_dir}/")


def _plot(rows: list[dict], path: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar([str(r["processes"]) for r in rows], [r["s_per_epoch"] for r in rows])
    ax.set_xlabel("processes")
    ax.set_ylabel("training seconds per epoch")
    ax.set_title(f"{name} ({rows[0]['device']})", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


if __name__ == "__main__":
    run_script(main)
