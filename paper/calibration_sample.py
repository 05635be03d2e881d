"""Is a parity gap the BatchNorm calibration sample? Re-evaluate elastic sub-nets with other calibration images.

    python paper/calibration_sample.py --runs RUNS --profile converged-e128-b32 --split random --seeds 0,1,2 \\
        [--method slimmable+junction+table@compute] [--orders 3] [--data PATH]

An elastic sub-net is evaluated with BN statistics re-estimated on ``calib_batches`` x ``batch_size``
un-augmented training images in a seeded order spread over the training set (the run's seed). A different
sample of the same size gives slightly different statistics, so part of a sub-net's Dice, and of its spread over
training seeds, could be that sample rather than the training. For every elastic run of ``paper/parity_table.py``
(``RUNS/<split>/seed<k>/<method>/checkpoint.pt``; checkpoints are never committed, so this needs the machine
that trained them) and every table shape, this script evaluates validation and test Dice with:

- ``run``: the run's own calibration (equal to its ``subnets.csv``);
- ``order<k>``: the same number of images in ``--orders`` other seeded orders (k = 1001, 1002, ...);
- ``all``: every training image once.

Writes ``calibration_sample.csv`` (split, method, seed, depth, width, calibration, images, val_dice, test_dice;
rows of other splits and methods already there are kept) into ``results/cvc_clinicdb/<profile>/`` and prints,
per shape, the range of test Dice over the same-size samples and the change with every image, beside the
spread of the sub-net's test Dice over the training seeds.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
from checkout import ROOT
from parity_table import TABLE_SHAPES
from runner import NEEDS_SAME_DATA, check_out_csv, parse_shapes, seed_list

from elasticnet.cli.arguments import at_least
from elasticnet.errors import UserError, run_script
from elasticnet.reporting import markdown_table, write_csv

COLUMNS = ("split", "method", "seed", "depth", "width", "calibration", "images", "val_dice", "test_dice")
ORDER_BASE = 1000  # the other orders' seeds: 1001, 1002, ... (no run seed is near)


def evaluations(folder: Path, shapes: list[tuple[int, float]], orders: int, data: str | None) -> list[dict]:
    """One row per shape and calibration sample of the elastic run in ``folder`` (columns of COLUMNS but the
    split, method and seed)."""
    import torch

    from elasticnet.checkpoint import load_checkpoint, model_from_checkpoint
    from elasticnet.config import eval_batch_size
    from elasticnet.models.subnet import SubNet
    from elasticnet.training.evaluate import calibration_batches, evaluate_calibrated, evaluation_loaders
    from elasticnet.training.run_dir import run_split

    path = folder / "checkpoint.pt"
    if not path.is_file():
        raise UserError(f"{path} does not exist: give --runs, the folder paper/parity_table.py trained in")
    cfg, model = model_from_checkpoint(load_checkpoint(path), torch.device("cpu"))
    if data:
        cfg.data.data = data
    t = cfg.train
    split = run_split(cfg, folder, NEEDS_SAME_DATA)
    if split.test is None:
        raise UserError(f"{folder} has no test images")
    batch = eval_batch_size(cfg)
    size = t.calib_batches * t.batch_size
    samples = [("run", t.seed, size)] + [(f"order{ORDER_BASE + k}", ORDER_BASE + k, size) for k in range(1, orders + 1)]
    samples.append(("all", t.seed, None))
    rows = []
    for depth, width in shapes:
        if depth not in cfg.model.depths or width not in cfg.model.widths:
            raise UserError(f"{folder} has no sub-net ({depth},{width:g}); give --shapes of its grid")
        for name, order, images in samples:
            calib, val, test = evaluation_loaders(split, batch, order, None, images)
            batches = calibration_batches(t.calib_batches, t.batch_size, batch) if images else len(calib)
            scores = [
                evaluate_calibrated(
                    model, SubNet(depth, width), calib, loader, torch.device("cpu"), batches, t.threshold, cfg.data.tile
                )
                for loader in (val, test)
            ]
            rows.append(
                {"depth": depth, "width": width, "calibration": name, "images": len(calib.dataset)}
                | {"val_dice": round(100 * scores[0].dice, 2), "test_dice": round(100 * scores[1].dice, 2)}
            )
            print(
                f"{folder.parent.name} ({depth},{width:g}) {name}: val {rows[-1]['val_dice']}, test {rows[-1]['test_dice']}"
            )
    return rows


def spread_table(rows: pd.DataFrame) -> list[dict]:
    """Per shape (means over the seeds): the range of test Dice over the same-size calibration samples, the change
    with every training image, and the sd over the training seeds of the test Dice with the run's calibration."""
    table = []
    for (depth, width), shape in rows.groupby(["depth", "width"]):
        same = shape[shape.calibration != "all"].groupby("seed").test_dice
        own = shape[shape.calibration == "run"].set_index("seed").test_dice
        every = shape[shape.calibration == "all"].set_index("seed").test_dice
        table.append(
            {
                "depth": depth,
                "width": width,
                "seeds": len(own),
                "test range, same size": round(float((same.max() - same.min()).mean()), 2),
                "test, all - run": round(float((every - own).mean()), 2) + 0.0,  # + 0.0: no "-0"
                "test sd over seeds": round(statistics.stdev(own), 2) if len(own) > 1 else "",
            }
        )
    return table


def check_out_file(path: Path) -> None:
    """Refuse, before any evaluation, an ``--out`` that is a folder or a file this script did not write."""
    check_out_csv(path, "calibration_sample.csv", lambda header: tuple(header) == COLUMNS)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="the --runs folder of paper/parity_table.py")
    p.add_argument("--profile", default="converged-e128-b32")
    p.add_argument("--split", default="random")
    p.add_argument("--method", default="slimmable+junction+table@compute")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--orders", type=at_least(1), default=3, help="other same-size calibration samples per run")
    p.add_argument("--shapes", type=parse_shapes, default=TABLE_SHAPES, help="default: the six table shapes")
    p.add_argument("--data", default=None, help="the data folder, if it moved since training")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    seeds = seed_list(args.seeds)
    out = args.out or ROOT / "results" / "cvc_clinicdb" / args.profile / "calibration_sample.csv"
    check_out_file(out)
    for seed in seeds:  # every checkpoint before the first evaluation
        if not (args.runs / args.split / f"seed{seed}" / args.method / "checkpoint.pt").is_file():
            raise UserError(
                f"no checkpoint of {args.split}/seed{seed}/{args.method} under --runs {args.runs}: give the folder "
                "paper/parity_table.py trained in"
            )
    rows = [
        {"split": args.split, "method": args.method, "seed": seed} | r
        for seed in seeds
        for r in evaluations(args.runs / args.split / f"seed{seed}" / args.method, args.shapes, args.orders, args.data)
    ]
    kept = []
    if out.is_file():
        old = pd.read_csv(out).to_dict("records")
        kept = [r for r in old if (r["split"], r["method"]) != (args.split, args.method)]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(kept + rows, out, COLUMNS)
    print(markdown_table(spread_table(pd.DataFrame(rows))))
    print(f"wrote {out}")


if __name__ == "__main__":
    run_script(main)
