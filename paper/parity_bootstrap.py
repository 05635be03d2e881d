"""How sure is a parity gap? Paired bootstrap over the test images of the elastic - individual Dice gap.

    python paper/parity_bootstrap.py --runs RUNS --profile converged-e128 --split random \\
        --method slimmable+junction+table@compute [--seeds 0,1,2] [--data PATH] [--resamples 10000]

``gaps.csv`` (``paper/parity_table.py``) gives each shape's gap as the mean over seeds of (elastic sub-net -
individual net) test Dice, and its spread over the seeds. The seeds share one test fold, so that spread leaves
out how much the gap depends on which images happen to be in it (123 on the random split). This script
re-evaluates the runs' checkpoints (``RUNS/<split>/seed<k>/<run>/checkpoint.pt`` as ``parity_table.py`` leaves
them; checkpoints are never committed) image by image: the elastic sub-net with its re-estimated BN
statistics, the individual net with its own, as in the tables. Per image, the difference of the two Dice
values is averaged over the seeds; the mean over images is the gap (equal to
``gaps.csv``), and resampling the images with replacement gives its 95 % interval and the share of resamples
below the target (-1 point). Frames of one video sequence are near duplicates, so the resampling unit is the
sequence (the split's group; ``--unit image`` resamples single images, which understates the uncertainty).
Both leave out how much a gap moves from one training seed to the next (the individual (3,0.25)'s test Dice
spans 72-78 over three seeds): ``--unit seed+sequence`` resamples the seeds as well (a two-level bootstrap).
``--split grouped-f0,grouped-f1,...`` pools folds: their test frames (distinct sequences) side by side, as one
test set of all their sequences (the gap is then the mean over all their frames; ``parity_table.py``'s pooled
split takes the mean over the folds, which differs where folds have different numbers of frames).

Where a fold and seed's checkpoints are gone (another machine), its committed per-sequence rows in
``gaps_by_sequence.csv`` (an earlier ``--by-group``) stand in for them: the sequence-level bootstraps only use
each sequence's frame count and summed gap, so they come out the same, up to that file's 0.01-point rounding;
``--unit image`` needs the checkpoints. ``--shapes`` bootstraps some shapes only (one whose checkpoint is lost).

Writes ``results/cvc_clinicdb/<profile>/bootstrap.csv``: split, method, unit, depth, width, seeds, images,
groups, gap, ci_low, ci_high, share_below_target (rows of other splits, methods, units or shapes already there
are kept). ``--by-group`` also writes ``gaps_by_sequence.csv`` beside it: each seed's elastic and individual test
Dice and their gap per test sequence (where a split's gap comes from), and its heat map ``gaps_by_sequence.png``
(``paper/sequence_gaps.py`` redraws it from the CSV).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import sequence_gaps
from checkout import ROOT
from parity_table import TABLE_SHAPES, TARGET, individual_name
from runner import NEEDS_SAME_DATA, check_out_csv, parse_shapes, seed_list

from elasticnet.errors import UserError, run_script
from elasticnet.reporting import write_csv

COLUMNS = (
    "split",
    "method",
    "unit",
    "depth",
    "width",
    "seeds",
    "images",
    "groups",
    "gap",
    "ci_low",
    "ci_high",
    "share_below_target",
)

BY_GROUP = sequence_gaps.CSV
GROUP_COLUMNS = sequence_gaps.COLUMNS


@functools.cache
def load_run(folder: Path, data: str | None):
    """(checkpoint, config, test data set, test image names, their groups) of the run in ``folder``, read once:
    every table shape of an elastic run is cut from the same checkpoint and tested on the same images."""
    from elasticnet.checkpoint import load_checkpoint
    from elasticnet.config import RunConfig
    from elasticnet.training.run_dir import run_split

    path = folder / "checkpoint.pt"
    if not path.is_file():
        raise UserError(f"{path} does not exist: give --runs, the folder paper/parity_table.py trained in")
    ckpt = load_checkpoint(path)
    cfg = RunConfig.from_saved(ckpt["config"])
    if data:
        cfg.data.data = data
    split = run_split(cfg, folder, NEEDS_SAME_DATA)
    if split.test is None:
        raise UserError(f"{folder} has no test images")
    names = [r["name"] for r in split.rows if r["split"] == "test"]
    groups = [str(r["group"]) for r in split.rows if r["split"] == "test"]
    return ckpt, cfg, split.test, names, groups


def test_dice(
    folder: Path, subnet: tuple[int, float] | None, data: str | None
) -> tuple[list[str], list[str], np.ndarray]:
    """(test image names, their groups, per-image Dice) of the run in ``folder``: ``subnet`` of an elastic run with its
    re-estimated BN statistics, or (``None``) an individual net with the BN statistics it trained."""
    import torch
    from torch.utils.data import DataLoader

    from elasticnet.checkpoint import cut_subnet, model_from_checkpoint
    from elasticnet.models.subnet import SubNet
    from elasticnet.models.surgery import extract
    from elasticnet.training.evaluate import evaluate

    ckpt, cfg, test, names, groups = load_run(folder, data)
    if subnet is None:
        _, model = model_from_checkpoint(ckpt)
        static = extract(model, SubNet(cfg.model.depths[0], max(cfg.model.widths))).eval()
    else:
        static = cut_subnet(ckpt, SubNet(*subnet))
    result = evaluate(static, DataLoader(test, batch_size=16), torch.device("cpu"), cfg.train.threshold, per_image=True)
    return names, groups, np.asarray(result.dice_per_image, dtype=np.float64)


def paired_gap(
    elastic: list[np.ndarray],
    individual: list[np.ndarray],
    resamples: int,
    groups: list[str] | None = None,
    seed: int = 0,
    over_seeds: bool = False,
) -> dict:
    """Gap (Dice points) of per-image, per-seed Dice arrays, its 95 % bootstrap interval, and the share of
    resamples below TARGET. Row i of every array is the same test image. With ``groups`` (one per image) whole
    groups are resampled (a cluster bootstrap: the mean over the images of the drawn groups), else images.
    With ``over_seeds`` the training seeds are resampled too (a two-level bootstrap: each resample draws as
    many seeds as there are, with replacement, and averages their gaps on the drawn groups), so the interval
    also holds how much the gap moves from one training to the next; with 3 seeds that level is coarse."""
    per_seed = np.stack([e - i for e, i in zip(elastic, individual, strict=True)]) * 100  # (seeds, images)
    diff = per_seed.mean(axis=0)  # per image
    keys = list(range(len(diff))) if groups is None else groups
    if len(keys) != len(diff):
        raise ValueError(f"{len(keys)} groups for {len(diff)} images")
    labels, index = np.unique(np.asarray(keys), return_inverse=True)
    counts = np.bincount(index)
    sums = np.stack([np.bincount(index, weights=d, minlength=len(labels)) for d in per_seed])  # (seeds, groups)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(labels), size=(resamples, len(labels)))
    if over_seeds:
        seed_draw = rng.integers(0, len(per_seed), size=(resamples, len(per_seed)))
        drawn = sums[seed_draw].mean(axis=1)  # (resamples, groups): the drawn seeds' mean per group
        means = np.take_along_axis(drawn, draw, axis=1).sum(axis=1) / counts[draw].sum(axis=1)
    else:
        means = sums.mean(axis=0)[draw].sum(axis=1) / counts[draw].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "images": len(diff),
        "groups": len(labels),
        "gap": round(float(diff.mean()), 2),
        "ci_low": round(float(low), 2),
        "ci_high": round(float(high), 2),
        "share_below_target": round(float((means < TARGET).mean()), 3),
    }


def split_list(args) -> list[str]:
    """The ``--split`` folds."""
    return [s for s in args.split.split(",") if s]


def split_name(args) -> str:
    """The split as the tables name it: pooled folds joined by '+'."""
    return "+".join(split_list(args))


def shape_arrays(args, depth: int, width: float, seeds: list[int]):
    """(elastic, individual, groups) of one shape: per seed, the per-image test Dice of the elastic sub-net and of
    the individual net, and the images' groups; several ``--split`` folds are pooled (their test frames side by
    side, each fold's sequences named ``<fold>/<sequence>``)."""
    splits = split_list(args)
    elastic, individual, groups = [], [], []
    for seed in seeds:
        e_all, i_all, g_all = [], [], []
        for split in splits:
            base = args.runs / split / f"seed{seed}"
            if trained_here(base, args.method, depth, width) or args.unit == "image":
                names_e, g, e = test_dice(base / args.method, (depth, width), args.data)
                names_i, _, i = test_dice(base / individual_name(depth, width), None, args.data)
                if names_e != names_i:
                    raise UserError(
                        f"{split} seed {seed}: the elastic and the individual run were tested on different images"
                    )
            else:
                g, e, i = committed_sequences(args, split, seed, depth, width)
                g = [x.split("/", 1)[-1] for x in g]  # written as <split>/<sequence>
            e_all.append(e)
            i_all.append(i)
            g_all += [f"{split}/{x}" for x in g]
            print(
                f"{split} ({depth},{width:g}) seed {seed}: elastic {e.mean() * 100:.2f}, individual {i.mean() * 100:.2f}"
            )
        elastic.append(np.concatenate(e_all))
        individual.append(np.concatenate(i_all))
        groups = g_all
    return elastic, individual, groups


def trained_here(base: Path, method: str, depth: int, width: float) -> bool:
    """Whether both checkpoints of a pair (the elastic run, the individual net of the shape) are under ``base``."""
    return all((base / run / "checkpoint.pt").is_file() for run in (method, individual_name(depth, width)))


def committed_sequences(args, split: str, seed: int, depth: int, width: float):
    """(groups, elastic, individual) of one fold, seed and shape from the committed ``gaps_by_sequence.csv``, for
    runs whose checkpoints are gone (another machine, a cleaned disk): each test sequence's mean Dice, repeated
    once per frame. A sequence-level bootstrap only uses each sequence's frame count and summed gap, so it is
    the same as from the checkpoints, up to the file's rounding (0.01 point per sequence); an image-level
    bootstrap needs the checkpoints."""
    path = getattr(args, "by_group_file", None)
    rows = pd.read_csv(path) if path is not None and path.is_file() else pd.DataFrame()
    if not set(GROUP_COLUMNS) <= set(rows.columns):
        rows = pd.DataFrame(columns=GROUP_COLUMNS)
    mine = rows[
        (rows["split"] == split)
        & (rows["method"] == args.method)
        & (rows["depth"] == depth)
        & np.isclose(rows["width"].astype(float), width)
        & (rows["seed"] == seed)
    ]
    if mine.empty:
        base = args.runs / split / f"seed{seed}"
        raise UserError(
            f"{split} seed {seed} ({depth},{width:g}): no checkpoints under {base} and no rows of it in {path}: "
            "give --runs, the folder paper/parity_table.py trained in"
        )
    print(f"{split} ({depth},{width:g}) seed {seed}: per-sequence Dice from {path.name} (no checkpoints under --runs)")
    try:
        repeat = mine["images"].to_numpy(dtype=int)
        dice = [mine[c].to_numpy(dtype=np.float64) / 100 for c in ("elastic", "individual")]
    except (TypeError, ValueError):
        raise UserError(f"{path}: the images, elastic and individual columns must be numbers") from None
    if (repeat < 1).any() or not all(np.isfinite(d).all() for d in dice):
        raise UserError(f"{path}: every sequence needs at least one image and a finite Dice")
    groups = [g for g, n in zip(mine["group"].astype(str), repeat, strict=True) for _ in range(n)]
    return groups, *(np.repeat(d, repeat) for d in dice)


def shape_row(args, depth: int, width: float, seeds: list[int], arrays=None) -> dict:
    """The bootstrap row of one shape, from its :func:`shape_arrays` (computed here when not given)."""
    elastic, individual, groups = arrays or shape_arrays(args, depth, width, seeds)
    return {
        "split": split_name(args),
        "method": args.method,
        "unit": args.unit,
        "depth": depth,
        "width": width,
        "seeds": ",".join(map(str, seeds)),
    } | paired_gap(
        elastic, individual, args.resamples, groups if args.unit != "image" else None, over_seeds="seed" in args.unit
    )


def group_rows(
    elastic: list[np.ndarray], individual: list[np.ndarray], groups: list[str], seeds: list[int]
) -> list[dict]:
    """Per seed and test sequence: images, mean test Dice of the elastic sub-net and of the individual net, and
    the gap (points): where a split's gap comes from (one hard sequence can carry a fold's verdict)."""
    keys = np.asarray(groups)
    rows = []
    for seed, e, i in zip(seeds, elastic, individual, strict=True):
        for group in dict.fromkeys(groups):
            mask = keys == group
            rows.append(
                {
                    "seed": seed,
                    "group": group,
                    "images": int(mask.sum()),
                    "elastic": round(float(e[mask].mean() * 100), 2),
                    "individual": round(float(i[mask].mean() * 100), 2),
                    "gap": round(float((e[mask] - i[mask]).mean() * 100), 2),
                }
            )
    return rows


def merged(
    rows: list[dict], path: Path, keys: tuple[str, ...] = ("split", "method", "unit"), columns: tuple = COLUMNS
) -> list[dict]:
    """``rows`` and the rows of ``path`` whose ``keys`` differ from every row of ``rows``."""
    if not path.is_file():
        return rows
    old = pd.read_csv(path, dtype={"seeds": str} if "seeds" in columns else None).to_dict("records")
    if old and set(old[0]) != set(columns):
        old = []  # an older layout: this run's rows replace it
    mine = {tuple(r[k] for k in keys) for r in rows}
    return [r for r in old if tuple(r[k] for k in keys) not in mine] + rows


def check_by_group_file(path: Path) -> None:
    check_out_csv(path, BY_GROUP, lambda header: list(header) == list(GROUP_COLUMNS))


def check_out_file(path: Path) -> None:
    """Refuse, before the resampling, an ``--out`` that is a folder or a file this script did not write."""
    check_out_csv(path, "bootstrap.csv", lambda header: {"split", "method", "depth", "width", "gap"} <= set(header))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, required=True, help="the --runs folder of paper/parity_table.py")
    p.add_argument("--profile", default="converged-e128")
    p.add_argument("--split", default="random", help="a split, or folds to pool: grouped-f0,grouped-f1,...")
    p.add_argument("--method", default="slimmable+junction+table@compute")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--data", default=None, help="the data folder, if it moved since training")
    p.add_argument("--resamples", type=int, default=10000)
    p.add_argument(
        "--unit",
        default="sequence",
        choices=["sequence", "image", "seed+sequence"],
        help="what is resampled: test sequences, test images, or training seeds and test sequences",
    )
    p.add_argument(
        "--shapes",
        type=parse_shapes,
        default=TABLE_SHAPES,
        help="depth,width pairs separated by ';' (default: the six table shapes); rows of other shapes are kept",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument(
        "--by-group", action="store_true", help=f"also write {BY_GROUP} beside --out: each seed's gap per test sequence"
    )
    args = p.parse_args(argv)
    if args.resamples < 100:
        raise UserError("--resamples must be at least 100")
    seeds = seed_list(args.seeds)
    out = args.out or ROOT / "results" / "cvc_clinicdb" / args.profile / "bootstrap.csv"
    check_out_file(out)
    args.by_group_file = out.parent / BY_GROUP
    if args.by_group:
        check_by_group_file(args.by_group_file)
    arrays = {(d, w): shape_arrays(args, d, w, seeds) for d, w in args.shapes}
    rows = [shape_row(args, d, w, seeds, arrays[d, w]) for d, w in args.shapes]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(merged(rows, out, ("split", "method", "unit", "depth", "width")), out, COLUMNS)
    if args.by_group:
        by_group = [
            {"split": split_name(args), "method": args.method, "depth": d, "width": w} | row
            for (d, w), (e, i, g) in arrays.items()
            for row in group_rows(e, i, g, seeds)
        ]
        by_group_file = out.parent / BY_GROUP
        every = merged(by_group, by_group_file, ("split", "method", "depth", "width"), GROUP_COLUMNS)
        write_csv(every, by_group_file, GROUP_COLUMNS)
        print(f"wrote {by_group_file}")
        print(f"wrote {sequence_gaps.plot(pd.DataFrame(every), by_group_file.with_name(sequence_gaps.PNG))}")
    for r in rows:
        print(f"({r['depth']},{r['width']:g}) gap {r['gap']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}]")
    print(f"wrote {out}")


if __name__ == "__main__":
    run_script(main)
