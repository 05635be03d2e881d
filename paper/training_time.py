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
import statistics
import subprocess
import sys
import time
from pathlib import Path

from checkout import ROOT
from runner import check_folder, child_env, claim_out_folder, hardware_text, note_invocation, script_command

from elasticnet.cli.arguments import number_list
from elasticnet.config import build_config
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.hardware import cpu_summary
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


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The command line and the flags passed on to ``elasticnet train``, checked before anything is written
    (``args.batches``: the per-process batch of each process count; ``args.runs``/``args.out`` filled in)."""
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
    args, extra = p.parse_known_args(argv)
    if args.name in ("", ".", "..") or Path(args.name).name != args.name:
        raise UserError(f"--name {args.name!r}: give a plain folder name (results/training_time/NAME), e.g. cpu-2x")
    batch = build_config(args.config, {}, args.profile).train.batch_size
    args.batches = {n: batch // n if args.scaling == "strong" else batch for n in args.processes}
    uneven = [n for n in args.processes if args.scaling == "strong" and batch % n]
    if uneven:
        raise UserError(
            f"batch_size {batch} does not split over {uneven[0]} processes; give process counts that divide it, "
            "or --scaling weak"
        )
    args.out_flag = "--out" if args.out else "--name"  # the flag that named the results folder, for messages
    args.runs = args.runs or ROOT / "runs" / "training_time" / args.name
    args.out = args.out or ROOT / "results" / "training_time" / args.name
    check_folder(args.runs)
    return args, [e for e in extra if e != "--"]


def time_training(args, extra: list[str], n: int) -> tuple[dict, str]:
    """Train (or reuse) the run with ``n`` processes; its table row and its command as a reader would paste it."""
    batch, run = args.batches[n], args.runs / f"p{n}"
    command = command_for(n, args, extra, run, batch)
    threads = 1 if args.device == "cuda" else max(1, (os.cpu_count() or 1) // n)
    timing = run / "wall_seconds.json"
    if not (run / "checkpoint.pt").exists():
        print(f"training with {n} process(es): {' '.join(command)}", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, env=child_env(threads), cwd=ROOT)
        if done.returncode:
            raise SystemExit(f"training with {n} process(es) failed (exit {done.returncode}); its output is above")
        atomic_write_text(timing, json.dumps({"wall_seconds": time.perf_counter() - start}))
    else:
        print(f"reusing {run}", flush=True)
    log = read_log(run)
    seconds = [r["seconds"] for r in log]
    reached = [sum(seconds[: k + 1]) for k, r in enumerate(log) if r["val_dice_largest"] >= args.target_dice]
    row = {
        "device": args.device,
        "processes": n,
        "threads_per_process": threads,
        "batch_per_process": batch,
        "global_batch": batch * n,
        "epochs": len(log),
        "s_per_epoch": round(statistics.median(seconds), 1),
        "s_to_target": round(reached[0], 1) if reached else "not reached",
        "train_s": round(sum(seconds), 1),
        "wall_s": round(json.loads(timing.read_text())["wall_seconds"], 1) if timing.exists() else "",
        "final_val_dice_largest": log[-1]["val_dice_largest"],
    }
    return row, f"OMP_NUM_THREADS={threads} " + " ".join(["python", *command[1:]]).replace(f"{ROOT}/", "")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = parse_args(argv)
    claim_out_folder(args.out, args.out_flag)
    rows, commands = zip(*(time_training(args, extra, n) for n in args.processes))
    write_csv(rows, args.out / "table.csv")
    hardware = f"{hardware_text(args.device)}\n\nCPU: {cpu_summary()}"
    atomic_write_text(
        args.out / "table.md",
        f"# Training time: {args.name}\n\nConfig `{args.config}`{f' profile `{args.profile}`' if args.profile else ''}, "
        f"{args.scaling} scaling, target: validation Dice of the largest sub-net >= {args.target_dice}. "
        f"Seconds are training time (per-epoch validation excluded); wall_s is the whole command.\n\n"
        f"{hardware}\n\n" + markdown_table(rows) + "\n\nCommands:\n\n```\n" + "\n".join(commands) + "\n```\n",
    )
    note_invocation(args.out, script_command("training_time.py", argv))
    _plot(list(rows), args.out / "seconds_per_epoch.png", args.name)
    print(markdown_table(rows))
    print(f"wrote {args.out}/")


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
