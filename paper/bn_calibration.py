"""Ablation: how a sub-net's BatchNorm statistics are re-estimated, on the Dice-table runs (no training).

    python paper/bn_calibration.py --runs runs/dice_table/cpu [--split random,grouped] [--seeds 0] \\
        [--out results/cvc_clinicdb/cpu]

For every finished run of ``paper/dice_table.py`` it re-evaluates each sub-net on the test images with
the BN statistics estimated five ways:

- ``as_trained``: the running averages of training (what a plain U-Net is normally evaluated with);
- ``first16``: 16 batches of un-augmented training images in file order (the calibration of the
  trainings whose tables these are; in CVC-ClinicDB file order means a handful of video sequences);
- ``spread16``: 16 batches of un-augmented training images drawn evenly from the whole training set;
- ``all``: every training image once, un-augmented;
- ``augmented16``: 16 batches of augmented training images in a seeded random order.

Writes ``bn_calibration.csv`` (one row per run, sub-net and way) and ``bn_calibration.md`` (mean test Dice
per method and way at full width and over the grid) into ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
from checkout import ROOT
from runner import NEEDS_SAME_DATA, check_out_folder, claim_out_folder, script_command, seed_list
from torch.utils.data import DataLoader

from elasticnet.checkpoint import load_checkpoint, model_from_checkpoint
from elasticnet.errors import UserError, run_script
from elasticnet.files import atomic_write_text
from elasticnet.reporting import markdown_table, write_csv
from elasticnet.training.calibration import bn_state, calibrate_bn, load_bn_state
from elasticnet.training.evaluate import evaluate_subnet
from elasticnet.training.run_dir import run_split

WAYS = ("as_trained", "first16", "spread16", "all", "augmented16")


def calibration_batches(way: str, split, batch_size: int, seed: int):
    """The image batches one way of calibration sees (None: keep the statistics as trained)."""
    train = split.train
    n = len(train)
    if way == "as_trained":
        return None
    if way == "first16":
        return DataLoader(train.subset(range(min(n, 16 * batch_size))), batch_size=batch_size)
    if way == "spread16":
        count = min(n, 16 * batch_size)
        picks = np.random.default_rng(seed).permutation(n)[:count]
        return DataLoader(
            train.subset(sorted(picks.tolist())),
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
    if way == "all":
        return DataLoader(
            train.subset(range(n)), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
        )
    if way == "augmented16":
        keys = [
            (int(i), seed * 100003 + k)
            for k, i in enumerate(np.random.default_rng(seed).permutation(n)[: 16 * batch_size])
        ]
        return DataLoader([train[key] for key in keys], batch_size=batch_size)
    raise ValueError(way)


def evaluate_run(run: Path, meta: dict) -> list[dict]:
    torch.manual_seed(0)
    cfg, model = model_from_checkpoint(load_checkpoint(run / "checkpoint.pt"))
    split = run_split(cfg, run, NEEDS_SAME_DATA)
    test = DataLoader(split.test, batch_size=cfg.train.batch_size)
    as_trained = bn_state(model)
    rows = []
    for subnet in cfg.model.subnets():
        for way in WAYS:
            load_bn_state(model, as_trained)
            batches = calibration_batches(way, split, cfg.train.batch_size, cfg.train.seed)
            if batches is not None:
                calibrate_bn(model, subnet, (images for images, _ in batches), 10**9)
            result = evaluate_subnet(model, subnet, test, torch.device("cpu"), cfg.train.threshold)
            rows.append(
                meta | {"depth": subnet.depth, "width": subnet.width, "way": way, "test_dice": round(result.dice, 4)}
            )
    load_bn_state(model, as_trained)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=str(ROOT / "runs" / "dice_table" / "cpu"))
    p.add_argument("--split", default="random,grouped")
    p.add_argument("--seeds", default="0")
    p.add_argument("--out", default=str(ROOT / "results" / "cvc_clinicdb" / "cpu"))
    args = p.parse_args(argv)
    splits, seeds = [s for s in args.split.split(",") if s], seed_list(args.seeds)
    runs = Path(args.runs)
    found = [
        (split, seed, run)
        for split in splits
        for seed in seeds
        for run in sorted((runs / split / f"seed{seed}").glob("*/checkpoint.pt"))
    ]
    if not found:  # before anything is written: an empty table must not replace the one in --out
        raise UserError(
            f"no finished run under --runs {runs} for --split {args.split} --seeds {args.seeds}; give the folder "
            "paper/dice_table.py trained in (RUNS/PROFILE, e.g. runs/dice_table/cpu)"
        )
    check_out_folder(Path(args.out))
    rows = []
    for split, seed, run in found:
        name = run.parent.name
        print(f"{split}/seed{seed}/{name}", flush=True)
        method = "individual" if name.startswith("individual") else name
        rows += [
            r
            | (
                {"depth": int(name.split("-d")[1][0]), "width": float(name.split("-w")[1])}
                if method == "individual"
                else {}
            )
            for r in evaluate_run(run.parent, {"split": split, "seed": int(seed), "method": method})
        ]
    out = Path(args.out)
    claim_out_folder(out)
    write_csv(rows, out / "bn_calibration.csv")
    summary = []
    for split in sorted({r["split"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["split"] == split}):
            for scope, keep in (("full width", lambda r: r["width"] == 1.0), ("all sub-nets", lambda r: True)):
                mine = [r for r in rows if r["split"] == split and r["method"] == method and keep(r)]
                if method in ("individual", "uniform") and scope == "all sub-nets":
                    continue
                summary.append(
                    {"split": split, "method": method, "sub-nets": scope}
                    | {
                        way: round(100 * statistics.mean(r["test_dice"] for r in mine if r["way"] == way), 1)
                        for way in WAYS
                    }
                )
    command = script_command("bn_calibration.py", sys.argv[1:] if argv is None else argv)
    atomic_write_text(
        out / "bn_calibration.md",
        "# BatchNorm re-estimation ablation (test Dice %, mean over the sub-nets and seeds named)\n\n"
        f"Runs: `{args.runs}`, seeds {args.seeds}; command: `{command}`. "
        "Ways: see the docstring of `paper/bn_calibration.py`.\n\n" + markdown_table(summary),
    )
    print(markdown_table(summary))


if __name__ == "__main__":
    run_script(main)
