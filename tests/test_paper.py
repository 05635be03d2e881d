"""The Dice-table script (paper/dice_table.py): its bookkeeping on made-up numbers, and one tiny real table."""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import convergence
import dice_table
import dice_tables
import mammography_epochs
import mammography_table
import numpy as np
import pandas as pd
import parity_bootstrap
import parity_table
import pytest
import runner
import sequence_gaps
from helpers import write_fake_cvc

from elasticnet.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def rows(method, depth, width, dices, split="grouped"):
    return [
        {"split": split, "method": method, "depth": depth, "width": width, "seed": seed, "dice": d}
        for seed, d in enumerate(dices)
    ]


def test_individual_unets_have_the_channels_of_the_elastic_subnets():
    for depth, width in dice_table.INDIVIDUAL["2"]:
        t = dice_table.individual(depth, width, 16)
        assert t.shape == (depth, width) and "--base-width" in t.flags
    names = [t.name for t in dice_table.trainings("all", 16)]
    assert len(names) == len(set(names)) == 6 + 4  # six shapes, four elastic trainings
    assert [t.name for t in dice_table.trainings("1", 16)] == [
        "individual-d3-w1",
        "individual-d4-w1",
        "individual-d5-w1",
        "uniform",
    ]


def test_grid_compares_with_individual_and_applies_the_one_point_target():
    test = (
        rows("individual", 3, 0.25, [0.60, 0.62, 0.64])
        + rows("sandwich+calib", 3, 0.25, [0.60, 0.61, 0.62])
        + rows("individual", 5, 1.0, [0.80, 0.80, 0.80])
        + rows("sandwich+calib", 5, 1.0, [0.70, 0.71, 0.72])
    )
    points = dice_tables.Points(pd.DataFrame(test))
    grid = {(r["depth"], r["width"]): r for r in dice_tables.grid(points, "grouped", "sandwich+calib")}
    assert grid[(3, 0.25)]["difference"] == "-1.0" and grid[(3, 0.25)]["target met"] == "yes"
    assert grid[(5, 1.0)]["difference"] == "-9.0" and grid[(5, 1.0)]["target met"] == "no"
    assert grid[(4, 0.5)]["individual"] == "" and grid[(4, 0.5)]["target met"] == ""
    mean, sd, n = points.get("grouped", "individual", 3, 0.25)
    assert (round(mean, 6), round(sd, 6), n) == (62.0, 2.0, 3)


def test_the_elastic_method_is_chosen_on_validation_not_test():
    val = (
        rows("sandwich", 5, 1.0, [0.5, 0.5])
        + rows("sandwich+distill+calib", 5, 1.0, [0.6, 0.6])
        + rows("uniform+calib", 5, 1.0, [0.9, 0.9])
        + rows("individual", 5, 1.0, [0.95, 0.95])
    )
    assert dice_tables.best_elastic(pd.DataFrame(val), "grouped") == "sandwich+distill+calib"


def test_time_ratio_uses_the_same_seed_and_split():
    records = [
        {"split": "random", "seed": 0, "run": name, "train_seconds": t, "wall_seconds": float(t + 10)}
        for name, t in [("uniform", 30.0), ("a", 20.0), ("b", 40.0)]
    ]
    records = pd.DataFrame(records)
    ratio = dice_tables.time_ratios(records, "random", "uniform", ["a", "b"])
    assert ratio["train"] == pytest.approx(0.5) and ratio["wall"] == pytest.approx(40 / 80) and ratio["seeds"] == 1
    assert math.isnan(dice_tables.time_ratios(records, "grouped", "uniform", ["a", "b"])["train"])


TINY = """
model: {depths: [3, 4, 5], widths: [0.5, 1.0], base_width: 8}
data: {dataset: cvc-clinicdb, split: grouped, folds: 5, fold: 0, val_fraction: 0.2, augment: none,
       image_size: [32, 32]}
train: {batch_size: 4, calib_batches: 1}
profiles:
  tiny: {train: {epochs: 1}}
"""


@pytest.mark.slow
def test_table_1_end_to_end_on_a_tiny_fake_cvc_folder_and_reuse(tmp_path):
    data = write_fake_cvc(tmp_path / "cvc")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    out, runs = tmp_path / "results", tmp_path / "runs"
    command = [
        sys.executable,
        str(ROOT / "paper" / "dice_table.py"),
        "--data",
        str(data),
        "--config",
        str(config),
        "--profile",
        "tiny",
        "--table",
        "1",
        "--split",
        "grouped",
        "--seeds",
        "0",
        "--jobs",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--runs",
        str(runs),
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == ["split", "method", "depth", "width", "seed", "dice", "iou", "train_seconds"]
    methods = {(r["method"], r["depth"], r["width"]) for r in summary}
    assert methods == {(m, str(d), "1.0") for m in ("individual", "uniform", "uniform+calib") for d in (3, 4, 5)}
    assert all(0 <= float(r["dice"]) <= 1 and float(r["train_seconds"]) > 0 for r in summary)
    for name in ("table1.md", "table1.csv", "table1.png", "tables.md", "runs.csv", "COMMANDS.md", "splits/grouped.csv"):
        assert (out / name).is_file(), name
    # the individual U-Nets really are plain networks of the elastic sub-nets' shapes
    assert (
        "depths:\n  - 4\n  widths:\n  - 1.0"
        in (runs / "tiny" / "grouped" / "seed0" / "individual-d4-w1" / "config.yaml").read_text()
    )
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0 and "4 of 4 runs finished already; training 0" in again.stdout
    with open(out / "summary.csv", newline="") as f:
        assert list(csv.DictReader(f)) == summary
    # the BN re-estimation ablation on the same runs: every sub-net of every run, five ways
    flags = ["--runs", str(runs / "tiny"), "--split", "grouped", "--seeds", "0", "--out", str(out)]
    bn = subprocess.run(
        [sys.executable, str(ROOT / "paper" / "bn_calibration.py"), *flags], capture_output=True, text=True
    )
    assert bn.returncode == 0, bn.stderr[-2000:]
    ablation = pd.read_csv(out / "bn_calibration.csv")
    assert set(ablation.way) == {"as_trained", "first16", "spread16", "all", "augmented16"}
    assert len(ablation) == 5 * (3 + 3) and ablation.test_dice.between(0, 1).all()  # 3 individual + uniform at 3 depths


def test_a_missing_data_folder_is_one_clear_message(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "paper" / "dice_table.py"), "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode != 0 and "is not a folder" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_parity_protocol_end_to_end_continues_from_committed_results(tmp_path):
    """paper/parity_table.py on a tiny fake CVC folder: individual nets, one recipe at equal epochs and at equal
    compute (its FLOPs within half the 12 individual trainings'), the summary and targets in the protocol's
    columns; after the run folders are gone, the committed small files alone give the same tables."""
    data = write_fake_cvc(tmp_path / "cvc")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY.replace("epochs: 1", "epochs: 2").replace("base_width: 8", "base_width: 16"))
    out, runs = tmp_path / "results", tmp_path / "runs"
    command = [
        sys.executable,
        str(ROOT / "paper" / "parity_table.py"),
        "--data",
        str(data),
        "--config",
        str(config),
        "--profile",
        "tiny",
        "--splits",
        "random",
        "--seeds",
        "0",
        "--arms",
        "slimmable",
        "--shapes",
        "table",
        "--jobs",
        "2",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--runs",
        str(runs),
    ]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    with open(out / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert list(summary[0]) == [
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
    assert {r["method"] for r in summary} == {"individual", "slimmable@compute", "slimmable@epochs"}
    assert len([r for r in summary if r["method"] == "individual"]) == 6
    assert {r["epochs"] for r in summary if r["method"] in ("individual", "slimmable@epochs")} == {"2"}
    with open(out / "targets.csv", newline="") as f:
        goals = {r["method"]: r for r in csv.DictReader(f)}
    assert list(next(iter(goals.values()))) == [
        "split",
        "method",
        "comparison",
        "worst_gap",
        "mean_gap",
        "compute_ratio",
        "met",
    ]
    assert float(goals["slimmable@compute"]["compute_ratio"]) <= 0.5
    assert float(goals["slimmable@epochs"]["compute_ratio"]) > float(goals["slimmable@compute"]["compute_ratio"])
    committed = out / "runs" / "random" / "seed0" / "individual-d5-w1"
    assert sorted(p.name for p in committed.iterdir()) == ["config.yaml", "log.csv", "record.json", "subnets.csv"]
    tables = (out / "tables.md").read_text()
    shutil.rmtree(runs)  # another machine: only what is committed
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert not runs.exists() or not any(runs.rglob("checkpoint.pt"))  # nothing retrained
    assert "8/8] done" in again.stdout
    assert again.stdout.count("(committed)") == 8  # progress counts the reused runs too
    assert (out / "tables.md").read_text() == tables
    # a report asked for another arm and seed still covers every committed run
    narrow = [*command, "--report-only", "--arms", "sandwich", "--seeds", "1"]
    commands = (out / "COMMANDS.md").read_text()
    third = subprocess.run(narrow, capture_output=True, text=True, cwd=ROOT)
    assert third.returncode == 0, third.stderr[-2000:]
    assert (out / "tables.md").read_text() == tables
    # a report trains nothing: COMMANDS.md lists no new invocation, and still every committed run's own command
    assert (out / "COMMANDS.md").read_text() == commands and commands.count("-m elasticnet train") == 8


def test_parallel_jobs_spread_over_the_visible_gpus(monkeypatch):
    """--jobs N with several GPUs: the jobs go round-robin over cuda:0..N-1, each holding its GPU while it runs."""
    import torch

    from elasticnet.runtime import DevicePool, with_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    pool = DevicePool("auto", 3)
    assert pool.names == ["cuda:0", "cuda:1", "cuda:0"]
    with pool.take() as a, pool.take() as b:
        assert {a, b} == {"cuda:0", "cuda:1"}
    assert DevicePool("cpu", 2).names == ["cpu", "cpu"]
    assert with_device(["x", "--device", "auto", "--quiet"], "cuda:1") == ["x", "--device", "cuda:1", "--quiet"]


def write_fake_mias(root: Path, women: int = 6, size: int = 64, extras: bool = False) -> Path:
    """``2 * women`` films with bright masses (CIRC) on the odd ones, Info.txt as mini-MIAS writes it; with
    ``extras`` a calcification (CALC) on film 2 and, on the last film, a mass Info.txt does not locate."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    lines = ["generated films"]
    for i in range(1, 2 * women + 1):
        film = rng.integers(20, 60, (size, size), dtype=np.uint8)
        if i % 2:
            x, y, r = int(rng.integers(16, 48)), int(rng.integers(16, 48)), 6
            cv2.circle(film, (x, size - 1 - y), r, 220, -1)
            lines.append(f"mdb{i:03d} G CIRC B {x} {y} {r}")
        elif extras and i == 2:
            cv2.circle(film, (20, size - 1 - 20), 3, 250, -1)
            lines.append(f"mdb{i:03d} G CALC B 20 20 3")
        elif extras and i == 2 * women:
            lines.append(f"mdb{i:03d} G CIRC B")
        else:
            lines.append(f"mdb{i:03d} G NORM")
        cv2.imwrite(str(root / "images" / f"mdb{i:03d}.png"), film)
    (root / "Info.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("classes", ["mass", "all"])
def test_mammography_table_end_to_end_on_generated_films(tmp_path, classes):
    data = write_fake_mias(tmp_path / "mias", extras=True)
    config = tmp_path / "m.yaml"
    config.write_text(
        "model: {in_channels: 1, depths: [2, 3], widths: [0.5, 1.0], base_width: 4}\n"
        "data: {dataset: auto, split: grouped, folds: 2, fold: 0, val_fraction: 0.2, image_size: [64, 64],\n"
        "       mean: [0.2], std: [0.25], augment: none}\n"
        "train: {batch_size: 4, calib_batches: 1, lesion_detection: true}\n"
        "profiles:\n  tiny: {train: {max_steps: 3}}\n"
    )
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "paper" / "mammography_table.py"),
            "--data",
            str(data),
            "--config",
            str(config),
            "--profile",
            "tiny",
            "--folds",
            "0,1",
            "--device",
            "cpu",
            "--runs",
            str(tmp_path / "runs"),
            "--out",
            str(out),
            "--threads",
            "1",
            "--flags",
            f"--mias-classes {classes}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    heading = {"mass": "# Mammography masses", "all": "# Mammography abnormalities"}[classes]
    assert (out / "table.md").read_text().startswith(heading)
    with open(out / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
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
    pooled = [r for r in rows if r["fold"] == "pooled"]
    assert len(pooled) == 4 and {r["fold"] for r in rows} == {"0", "1", "pooled"}
    # every film is tested exactly once over the two folds: 12 films, of which the one with an unlocated mass is
    # neither a lesion film nor a normal one; 6 masses, and the calcification with `all`
    lesions = {"mass": 6, "all": 7}[classes]
    assert all(int(r["films"]) == 11 and int(r["lesions"]) == lesions for r in pooled)
    assert all(0 <= float(r["sensitivity_at_1fp"]) <= 1 for r in rows)
    for name in ("table.md", "froc.png", "COMMANDS.md", "runs/fold0/config.yaml", "runs/fold1/subnets.csv"):
        assert (out / name).is_file(), name
    with open(out / "diagnosis.csv", newline="") as f:
        diagnosis = {(r["depth"], r["width"]): r for r in csv.DictReader(f)}
    assert len(diagnosis) == 4
    for r in pooled:  # the pooled table's figures, and the lost masses' shares in order
        d = diagnosis[(r["depth"], r["width"])]
        assert d["lesions"] == r["lesions"] and d["sensitivity_at_1fp"] == r["sensitivity_at_1fp"]
        assert float(d["sensitivity_at_1fp"]) <= float(d["lesions_detectable"]) <= float(d["lesions_covered"]) <= 1
        sizes = [int(d[f"lesions_{n}"]) for n in ("small", "medium", "large")]  # every mass in one size bin
        assert sum(sizes) == int(d["lesions"])
    # the committed evaluations make the table again without the checkpoints, and a call on one fold neither
    # trains nor shrinks the table to that fold
    table = (out / "table.csv").read_text()
    shutil.rmtree(tmp_path / "runs")
    at = done.args.index("--folds") + 1
    fold0 = [*done.args[:at], "0", *done.args[at + 1 :]]
    again = subprocess.run(fold0, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "training fold" not in again.stdout and not (tmp_path / "runs").exists()
    assert (out / "table.csv").read_text() == table
    assert "folds 0,1 of 2" in (out / "table.md").read_text()


def test_mass_size_bins_hold_the_same_masses_at_every_working_resolution():
    from elasticnet.training.detection import DetectionTally

    assert mammography_table.size_bins((256, 256)) == (16.0, 32.0)
    assert mammography_table.size_bins((512, 384)) == (24.0, 48.0)  # the shorter side sets the scale
    tallies = {}
    for side in (256, 512):  # one mass of 20 px across at 256 x 256, found; the same film at twice the resolution
        mask = np.zeros((side, side), np.float32)
        yy, xx = np.mgrid[:side, :side]
        mask[(yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= (10 * side / 256) ** 2] = 1
        tally = DetectionTally()
        tally.add(mask * 0.9, mask)
        tallies[side] = mammography_table.diagnosis_rows({(5, 1.0): tally}, mammography_table.size_bins((side, side)))
    for rows in tallies.values():
        assert [rows[0][f"lesions_{n}"] for n in ("small", "medium", "large")] == [0, 1, 0]
        assert rows[0]["sensitivity_at_1fp_medium"] == 1.0


def test_the_small_files_of_committed_runs_are_not_ignored_by_git():
    """Campaigns continue from results/**/runs/ (config, log, tables); only the top-level runs/ is scratch."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (
        "results/cvc_clinicdb/converged/runs/random/seed0/x/log.csv",
        "results/mammography/m/runs/fold0/config.yaml",
    ):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 1, path
    assert subprocess.run(["git", "check-ignore", "-q", "runs/demo/checkpoint.pt"], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_probe_subnets_reports_dead_channels_and_logits(tmp_path):
    from elasticnet.cli import main

    run = tmp_path / "run"
    flags = "--base-width 4 --depths 2,3 --widths 0.5,1 --image-size 32x32 --synthetic-count 24 --batch-size 4"
    assert (
        main(["train", *flags.split(), "--calib-batches", "1", "--max-steps", "1", "--quiet", "--out", str(run)]) == 0
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "paper" / "probe_subnets.py"),
            "--checkpoint",
            str(run),
            "--subnets",
            "d2-w0.5,d3-w1",
            "--images",
            "4",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "dead channels per block" in line]
    assert len(lines) == 2 and "d2-w0.5" in lines[0] and "pixels above threshold" in lines[1]


def test_planned_compute_is_what_the_training_counts(tmp_path):
    from runner import planned_tflops

    from elasticnet.checkpoint import load_checkpoint
    from elasticnet.cli import main as cli

    out = tmp_path / "run"
    flags = "--base-width 16 --depths 3,4 --widths 0.5,1 --image-size 64x64 --synthetic-count 40 --batch-size 4"
    command = [sys.executable, "-m", "elasticnet", "train", *flags.split(), "--strategy", "sandwich"]
    command += ["--distill", "--epochs", "2", "--calib-batches", "1", "--device", "cpu", "--out", str(out), "--quiet"]
    assert cli(command[3:]) == 0
    steps, tflops = planned_tflops(command, "cpu")
    counted = load_checkpoint(out / "checkpoint.pt")
    assert steps == counted["step"]
    assert tflops == pytest.approx(counted["train_tflops"], rel=1e-3, abs=1e-4) and tflops > 0.01


def test_a_run_folder_is_reused_only_for_the_recipe_it_holds(tmp_path):
    from runner import check_same_recipe, recipe_differences

    from elasticnet.cli import main as cli

    out = tmp_path / "run"
    flags = "--base-width 4 --depths 2 --widths 1 --image-size 32x32 --synthetic-count 12 --batch-size 4 --epochs 1"
    command = [sys.executable, "-m", "elasticnet", "train", *flags.split(), "--calib-batches", "1", "--device", "cpu"]
    assert cli([*command[3:], "--out", str(out), "--quiet"]) == 0
    assert recipe_differences([*command, "--out", str(out)], out) == []
    # where it runs is not the recipe: another output folder, device or data path reuses the run
    moved = [*command[:-1], "auto", "--out", str(tmp_path / "elsewhere"), "--num-workers", "0"]
    assert recipe_differences(moved, out) == []
    changed = [*command, "--lr", "0.01", "--epochs", "2", "--out", str(out)]
    assert sorted(recipe_differences(changed, out)) == ["train.epochs: 1 -> 2", "train.lr: 0.002 -> 0.01"]
    with pytest.raises(UserError, match=r"another recipe.*train\.epochs: 1 -> 2.*another run name"):
        check_same_recipe(changed, out)
    assert recipe_differences(changed, tmp_path / "new") == []  # nothing saved there yet
    (tmp_path / "other").mkdir()  # a config another version wrote, with a key this one does not know
    (tmp_path / "other" / "config.yaml").write_text((out / "config.yaml").read_text() + "extra: {key: 1}\n")
    assert recipe_differences(command, tmp_path / "other")[0].startswith("config.yaml cannot be read")
    with pytest.raises(UserError, match=r"not a valid config.*epochs"):
        recipe_differences([*command, "--epochs", "x"], out)


def test_the_mammography_table_refuses_folds_trained_by_another_recipe(tmp_path):
    data = write_fake_mias(tmp_path / "mias")
    config = tmp_path / "m.yaml"
    text = (
        "model: {in_channels: 1, depths: [2], widths: [1.0], base_width: 4}\n"
        "data: {dataset: auto, split: grouped, folds: 2, fold: 0, val_fraction: 0.2, image_size: [32, 32],\n"
        "       mean: [0.2], std: [0.25], augment: none}\n"
        "train: {batch_size: 4, calib_batches: 1, lesion_detection: true}\n"
        "profiles:\n  tiny: {train: {max_steps: 2}}\n"
    )
    config.write_text(text)
    command = [sys.executable, str(ROOT / "paper" / "mammography_table.py"), "--data", str(data), "--config"]
    command += [str(config), "--profile", "tiny", "--folds", "0", "--device", "cpu", "--runs", str(tmp_path / "runs")]
    command += ["--out", str(tmp_path / "results"), "--threads", "1"]
    first = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    checkpoint = tmp_path / "runs" / "tiny" / "fold0" / "checkpoint.pt"
    before = checkpoint.read_bytes()
    config.write_text(text.replace("max_steps: 2", "max_steps: 3"))  # the profile edited after the run
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode != 0 and "Traceback" not in again.stderr
    assert "train.max_steps: 2 -> 3" in again.stderr and "another run name" in again.stderr
    assert checkpoint.read_bytes() == before


@pytest.mark.parametrize("arm", sorted(parity_table.ARMS))
def test_every_parity_arm_is_a_valid_training_config(arm):
    """A recipe arm is a list of train flags: a typo there would only show hours into a campaign."""
    from elasticnet.cli import build_parser
    from elasticnet.cli.train import config_overrides
    from elasticnet.config import build_config
    from elasticnet.training.recipe import sampler_for

    args = build_parser().parse_args(["train", *parity_table.ARMS[arm], "--epochs", "1"])
    cfg = build_config(None, config_overrides(args))
    sampler = sampler_for(cfg)  # refuses sub-nets outside the grid and bad sampling options
    assert sampler.largest in sampler.choices
    if "--always-subnets" in parity_table.ARMS[arm]:  # the last one given is the one used
        flags = parity_table.ARMS[arm]
        last = len(flags) - 1 - flags[::-1].index("--always-subnets")
        assert cfg.train.always_subnets == flags[last + 1].split(",")


def test_convergence_chooses_e_on_the_protocol_shapes_and_an_own_e_per_shape():
    """E: the smallest count whose doubling adds < 1 validation point to both (5,1) and (3,0.25); every other
    shape gets its own E by the same rule, left empty while it still climbs."""

    def row(d, w, e, v, lr=0.002):
        return {"lr": lr, "depth": d, "width": w, "epochs": e, "val_dice": v}

    rows = [
        *(row(5, 1.0, e, v) for e, v in [(32, 80.0), (64, 85.0), (128, 85.5), (256, 85.6)]),
        *(row(3, 0.25, e, v) for e, v in [(32, 55.0), (64, 65.0), (128, 69.0), (256, 69.5)]),
        *(row(4, 0.5, e, v) for e, v in [(64, 80.0), (128, 80.9)]),
        *(row(5, 0.25, e, v) for e, v in [(64, 72.0), (128, 75.0)]),
        row(3, 0.25, 64, 70.0, lr=0.02),  # a faster rate that validates worse at the longest common count
        row(3, 0.25, 128, 60.0, lr=0.02),
    ]
    chosen, rates, _, own = convergence.choose(rows)
    assert chosen == 128  # (3,0.25) gains 4 points from 64 to 128 epochs, so 64 is not enough for both
    assert rates[(3, 0.25)] == 0.002
    assert own == {(5, 1.0): 64, (3, 0.25): 128, (4, 0.5): 64, (5, 0.25): None}
    # (4,0.5) and (5,0.25) do not take part in E: without the protocol shapes' 256 runs E is not shown
    chosen, _, _, own = convergence.choose([r for r in rows if r["epochs"] < 256])
    assert chosen is None and own[(4, 0.5)] == 64


def fake_convergence_run(folder: Path, dice: float) -> None:
    folder.mkdir(parents=True)
    (folder / "subnets.csv").write_text(f"depth,width,dice_bn_as_trained\n5,1.0,{dice}\n")
    (folder / "log.csv").write_text("epoch,seconds,val_dice_largest\n1,2.0,0.5\n")


def test_convergence_report_keeps_every_committed_epoch_count(tmp_path):
    """The report is made from what is committed, whatever ``--epochs`` a call trains: a call with the default
    16,32,64,128 once rewrote the committed report without its 256- and 512-epoch points."""
    study = convergence.study("converged", results=tmp_path)
    assert (study.out, study.epochs, study.train_profile) == (tmp_path / "converged", 64, "cpu")
    for tag, dice in [("e64", 0.80), ("e256", 0.85), ("lr0.02-e512", 0.70)]:
        fake_convergence_run(study.out / "convergence-runs" / tag / "individual-d5-w1", dice)
    (study.out / "convergence-runs" / "seeds").mkdir()  # another study's folder, not an epoch count
    rows, curves = convergence.collect(study, [16, 32])
    assert sorted((r["lr"], r["epochs"], r["val_dice"]) for r in rows) == [
        (0.002, 64, 80.0),
        (0.002, 256, 85.0),
        (0.02, 512, 70.0),
    ]
    assert len(curves) == 3


def test_convergence_of_another_profile_reads_its_parity_runs_at_its_e(tmp_path):
    """A protocol at another width (converged-e128-b32) has its own study: its E-epoch point is the parity
    campaign's random-split seed-0 individual net, its other counts train under its own name and land in its
    own results folder."""
    study = convergence.study("converged-e128-b32", results=tmp_path)
    assert (study.epochs, study.train_profile) == (128, "converged-e128-b32")
    assert "base 32" in study.title
    fake_convergence_run(study.out / "runs" / "random" / "seed0" / "individual-d5-w1", 0.86)
    fake_convergence_run(study.out / "convergence-runs" / "e256" / "individual-d5-w1", 0.865)
    rows, _ = convergence.collect(study, [64, 256])
    assert sorted((r["epochs"], r["val_dice"]) for r in rows) == [(128, 86.0), (256, 86.5)]
    folder = convergence.run_folder(study, tmp_path / "runs", 64, "individual-d5-w1")
    assert folder.parts[-4] == "converged-e128-b32-e64"
    with pytest.raises(UserError, match="no profile 'nope'"):
        convergence.study("nope", results=tmp_path)


def test_a_shared_results_folder_keeps_every_scripts_command(tmp_path):
    """paper/convergence.py and paper/parity_table.py share a results folder: a command joins the invocations at
    the head of COMMANDS.md, the per-run part below stays as it is, and a command run twice is listed once."""
    path = tmp_path / "COMMANDS.md"
    path.write_text("# Commands\n\n    python paper/parity_table.py A\n\nTrainings (...):\n\n    -m elasticnet x\n")
    for _ in range(2):
        runner.note_invocation(tmp_path, "python paper/convergence.py --epochs 64")
    assert path.read_text() == (
        "# Commands\n\n    python paper/parity_table.py A\n    python paper/convergence.py --epochs 64"
        "\n\nTrainings (...):\n\n    -m elasticnet x\n"
    )
    assert runner.invocations(tmp_path) == ["python paper/parity_table.py A", "python paper/convergence.py --epochs 64"]
    fresh = tmp_path / "fresh"
    runner.claim_out_folder(fresh)  # what a script writes first
    runner.note_invocation(fresh, "python paper/convergence.py")
    assert (fresh / "COMMANDS.md").read_text() == "# Commands\n\n    python paper/convergence.py\n"


def test_a_listed_command_can_be_pasted_from_the_repository_root():
    """Paths inside this checkout are written relative to it, and arguments a shell would split are quoted."""
    argv = [str(runner.ROOT / "results" / "x"), "--data", "/my data/cvc", "--arms", "slimmable+junction+table"]
    command = runner.script_command("parity_table.py", argv)
    assert command == "python paper/parity_table.py results/x --data '/my data/cvc' --arms slimmable+junction+table"
    assert shlex.split(command)[2:] == ["results/x", "--data", "/my data/cvc", "--arms", "slimmable+junction+table"]


def test_parity_gaps_against_individual_nets_at_their_own_e(tmp_path):
    """--individual-e own: a shape still climbing at the profile's E is trained again for its own E and the
    equal-compute recipes are also compared with that run (the other shapes keep their E-epoch nets); the
    targets get a row per comparison, and the compute ratio still counts the budget at the profile's E."""
    (tmp_path / "convergence_epochs.csv").write_text(
        "depth,width,lr,own_e,longest_tried\n5,1.0,0.002,64,128\n3,0.25,0.002,,256\n4,0.5,0.002,128,256\n"
    )
    own = parity_table.own_epochs(tmp_path / "convergence_epochs.csv")
    assert own == {(5, 1.0): 64, (3, 0.25): 256, (4, 0.5): 128}
    frame = pd.DataFrame(
        rows("individual", 3, 0.25, [0.60, 0.60], "random")
        + rows("individual@own-e", 3, 0.25, [0.70, 0.72], "random")
        + rows("individual", 5, 1.0, [0.80, 0.80], "random")
        + rows("arm@compute", 3, 0.25, [0.65, 0.65], "random")
        + rows("arm@compute", 5, 1.0, [0.81, 0.79], "random")
        + rows("arm@epochs", 3, 0.25, [0.66, 0.66], "random")
    ).assign(train_tflops=1.0)
    at_e = parity_table.paired_gaps(frame, "dice").set_index(["method", "depth"])
    assert at_e.loc[("arm@compute", 3), "gap"] == pytest.approx(5.0)
    assert "individual@own-e" not in set(at_e.index.get_level_values(0))
    at_own = parity_table.paired_gaps(frame, "dice", parity_table.OWN_E).set_index(["method", "depth"])
    assert at_own.loc[("arm@compute", 3), "gap"] == pytest.approx(-6.0)  # 65 against 70 and 72
    assert at_own.loc[("arm@compute", 5), "gap"] == pytest.approx(0.0)  # (5,1) converged at E: its own net
    assert set(at_own.index.get_level_values(0)) == {"arm@compute"}  # equal epochs has no own-E comparison
    goals = parity_table.targets(frame, {"random": 4e12})
    assert sorted(goals.comparison) == [
        "equal compute",
        "equal compute, individual nets at their own E",
        "equal epochs",
    ]
    assert (goals.compute_ratio == 0.25).all()
    with pytest.raises(UserError, match=r"paper/convergence\.py"):
        parity_table.own_epochs(tmp_path / "nowhere.csv")


def write_table(folder: Path, films: int, lesions: int, sens: dict) -> Path:
    """A table.csv as paper/mammography_table.py writes it: one fold row and the pooled rows."""
    folder.mkdir(parents=True)
    rows = [
        {
            "fold": fold,
            "depth": d,
            "width": w,
            "films": films,
            "lesions": lesions,
            "sensitivity_at_0.5fp": s / 2,
            "sensitivity_at_1fp": s,
            "sensitivity_at_2fp": min(1, 2 * s),
            "dice_lesion": s / 3,
            "fp_rate_normal": 0.9,
        }
        for fold in ("0", "pooled")
        for (d, w), s in sens.items()
    ]
    pd.DataFrame(rows).to_csv(folder / "table.csv", index=False)
    return folder


def test_mammography_epochs_curve_reads_the_pooled_rows_per_subnet(tmp_path):
    a = write_table(tmp_path / "e20", 100, 21, {(5, 1.0): 0.4, (3, 0.5): 0.2})
    b = write_table(tmp_path / "e40", 100, 21, {(5, 1.0): 0.5, (3, 0.5): 0.3})
    mammography_epochs.main([f"40={b}", f"20={a}", "--out", str(tmp_path / "out")])
    got = pd.read_csv(tmp_path / "out" / "epochs.csv")
    assert list(got.columns) == list(mammography_epochs.COLUMNS)
    # ordered by sub-net, then epochs; only the pooled rows
    assert got[["epochs", "depth", "width", "sensitivity_at_1fp"]].values.tolist() == [
        [20, 3, 0.5, 0.2],
        [40, 3, 0.5, 0.3],
        [20, 5, 1.0, 0.4],
        [40, 5, 1.0, 0.5],
    ]
    assert (tmp_path / "out" / "epochs.png").stat().st_size > 0
    assert "mammography_epochs.py 40=" in (tmp_path / "out" / "COMMANDS.md").read_text()
    mammography_epochs.main([f"20={a}", "--out", str(tmp_path / "out")])  # its own folder: written again
    assert len(pd.read_csv(tmp_path / "out" / "epochs.csv")) == 2


def test_paper_scripts_never_write_into_a_folder_they_did_not_make(tmp_path):
    """A results folder holding files no paper script wrote (no COMMANDS.md) is refused before any work, and
    its files are left as they were; a file given as the folder too. An interrupted script's folder (the empty
    COMMANDS.md it claims first) stays its own."""

    a = write_table(tmp_path / "e20", 100, 21, {(5, 1.0): 0.4})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "epochs.csv").write_text("my own notes\n")
    with pytest.raises(UserError, match="no paper script wrote"):
        mammography_epochs.main([f"20={a}", "--out", str(mine)])
    assert (mine / "epochs.csv").read_text() == "my own notes\n" and sorted(os.listdir(mine)) == ["epochs.csv"]
    with pytest.raises(UserError, match="is a file"):
        runner.check_out_folder(mine / "epochs.csv")
    fresh = tmp_path / "fresh" / "table"
    runner.claim_out_folder(fresh)
    (fresh / "runs").mkdir()  # interrupted after its first copies
    runner.check_out_folder(fresh)
    runner.check_out_folder(tmp_path / "empty-or-new")


@pytest.mark.parametrize("bad", ["x=folder", "0=folder", "40", "=folder"])
def test_mammography_epochs_names_the_form_of_a_point(bad):
    with pytest.raises(UserError, match="EPOCHS=FOLDER"):
        mammography_epochs.parse_point(bad)


def test_mammography_epochs_refuses_tables_of_different_films(tmp_path):
    a = write_table(tmp_path / "e20", 250, 52, {(5, 1.0): 0.4})
    b = write_table(tmp_path / "e40", 100, 21, {(5, 1.0): 0.5})
    with pytest.raises(UserError, match="same folds"):
        mammography_epochs.main([f"20={a}", f"40={b}", "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="once"):
        mammography_epochs.main([f"20={a}", f"20={a}", "--out", str(tmp_path / "out")])
    with pytest.raises(UserError, match="does not exist"):
        mammography_epochs.main([f"20={tmp_path / 'missing'}", "--out", str(tmp_path / "out")])
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "table.csv").write_text("fold,depth,width\npooled,5,1.0\n")
    with pytest.raises(UserError, match="lacks the columns"):
        mammography_epochs.main([f"20={tmp_path / 'old'}", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing written for a refused curve


def test_paired_bootstrap_gap_is_the_mean_difference_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    individual = [rng.uniform(0.5, 1, 200) for _ in range(3)]
    elastic = [i + rng.normal(-0.01, 0.05, 200) for i in individual]
    row = parity_bootstrap.paired_gap(elastic, individual, resamples=2000)
    expected = np.mean([e - i for e, i in zip(elastic, individual)]) * 100
    assert row["images"] == 200 and row["gap"] == pytest.approx(expected, abs=0.01)
    assert row["ci_low"] < row["gap"] < row["ci_high"]
    # ~1 point per-image spread over 200 images and 3 seeds: the interval is about +-0.4 points
    assert 0.4 < row["ci_high"] - row["ci_low"] < 1.6
    # a constant difference leaves nothing to resample; its side of the target is certain
    constant = parity_bootstrap.paired_gap([i - 0.02 for i in individual], individual, 500)
    assert (constant["gap"], constant["ci_low"], constant["ci_high"], constant["share_below_target"]) == (
        -2.0,
        -2.0,
        -2.0,
        1.0,
    )
    assert parity_bootstrap.paired_gap([i + 0.02 for i in individual], individual, 500)["share_below_target"] == 0


def test_paired_bootstrap_by_sequence_is_wider_when_a_sequence_moves_together():
    """Near-duplicate frames of one sequence share their error: resampling sequences, not frames, says so."""
    rng = np.random.default_rng(2)
    groups = [f"s{k}" for k in range(10) for _ in range(20)]  # 10 sequences of 20 frames
    shift = {f"s{k}": rng.normal(0, 0.05) for k in range(10)}  # the sequence, not the frame, decides the gap
    individual = [rng.uniform(0.5, 1, 200)]
    elastic = [individual[0] + np.array([shift[g] for g in groups]) + rng.normal(0, 0.005, 200)]
    by_image = parity_bootstrap.paired_gap(elastic, individual, 2000)
    by_sequence = parity_bootstrap.paired_gap(elastic, individual, 2000, groups)
    assert by_sequence["gap"] == by_image["gap"] and by_sequence["groups"] == 10 and by_image["groups"] == 200
    width = lambda r: r["ci_high"] - r["ci_low"]
    assert width(by_sequence) > 2.5 * width(by_image)
    assert by_sequence["ci_low"] < by_sequence["gap"] < by_sequence["ci_high"]
    with pytest.raises(ValueError, match="groups"):
        parity_bootstrap.paired_gap(elastic, individual, 100, groups[:-1])


def test_paired_bootstrap_over_seeds_holds_the_spread_between_trainings():
    """Three trainings whose gaps differ by whole points: resampling the sequences alone sees one mean per image
    and a narrow interval; resampling the seeds too widens it to about the trainings' spread. Identical seeds
    leave the interval as it was."""
    rng = np.random.default_rng(3)
    groups = [f"s{k}" for k in range(20) for _ in range(10)]
    individual = [rng.uniform(0.5, 1, 200) for _ in range(3)]
    elastic = [i + shift + rng.normal(0, 0.01, 200) for i, shift in zip(individual, (-0.06, -0.01, 0.04))]
    sequences = parity_bootstrap.paired_gap(elastic, individual, 4000, groups)
    both = parity_bootstrap.paired_gap(elastic, individual, 4000, groups, over_seeds=True)
    width = lambda r: r["ci_high"] - r["ci_low"]
    assert both["gap"] == sequences["gap"] and width(sequences) < 1.0 and width(both) > 5 * width(sequences)
    assert both["ci_low"] < -4 and both["ci_high"] > 2  # close to the trainings' -6 ... +4 points
    same = [individual[0] - 0.02 + rng.normal(0, 0.01, 200)] * 3
    a = parity_bootstrap.paired_gap(same, [individual[0]] * 3, 4000, groups)
    b = parity_bootstrap.paired_gap(same, [individual[0]] * 3, 4000, groups, over_seeds=True)
    assert abs(width(a) - width(b)) < 0.05


def test_paired_bootstrap_re_evaluates_what_the_run_reported(tmp_path):
    """Image by image, the re-evaluated checkpoint gives the run's own test Dice (elastic: calibrated BN;
    individual: the BN it trained), on the run's test images."""
    from elasticnet.config import build_config
    from elasticnet.training.trainer import train

    settings = {"base_width": "4", "depths": "2,3", "widths": "0.5,1", "image_size": "32x32", "synthetic_count": "30"}
    settings |= {"batch_size": "8", "calib_batches": "1", "max_steps": "3", "test_fraction": "0.2"}
    run = train(build_config(None, {**settings, "out": str(tmp_path / "r")}), echo=lambda s: None, progress=False)
    table = {(int(r["depth"]), float(r["width"])): r for r in pd.read_csv(run / "subnets.csv").to_dict("records")}
    split = pd.read_csv(run / "split.csv")
    for subnet in [(2, 0.5), (3, 1.0)]:
        names, groups, dice = parity_bootstrap.test_dice(run, subnet, None)
        test = split[split["split"] == "test"]
        assert names == test["name"].tolist() and groups == test["group"].astype(str).tolist()
        assert len(dice) == table[subnet]["test_images"]
        assert dice.mean() == pytest.approx(table[subnet]["test_dice"], abs=1e-4)
    single = train(
        build_config(None, {**settings, "depths": "3", "widths": "1", "out": str(tmp_path / "i")}),
        echo=lambda s: None,
        progress=False,
    )
    row = pd.read_csv(single / "subnets.csv").iloc[0]
    _, _, dice = parity_bootstrap.test_dice(single, None, None)
    assert dice.mean() == pytest.approx(row["test_dice_bn_as_trained"], abs=1e-4)
    with pytest.raises(UserError, match="--runs"):
        parity_bootstrap.test_dice(tmp_path / "missing", None, None)


def test_paired_bootstrap_pools_folds_as_one_test_set_of_their_sequences(monkeypatch):
    """Two grouped folds pooled: the gap is the mean over both folds' frames, every fold's sequences are
    clusters of their own, and each fold's elastic run is paired with its own individual net."""
    frames = {"grouped-f0": (["a", "a", "b"], 0.1), "grouped-f1": (["c", "c", "c", "d"], -0.3)}

    def fake_test_dice(folder, subnet, data):
        split = folder.parts[-3]
        groups, shift = frames[split]
        base = np.linspace(0.5, 0.9, len(groups))
        names = [f"{split}-{k}" for k in range(len(groups))]
        return names, groups, base + (shift if subnet is not None else 0.0)

    monkeypatch.setattr(parity_bootstrap, "test_dice", fake_test_dice)
    monkeypatch.setattr(parity_bootstrap, "trained_here", lambda *a: True)
    args = argparse.Namespace(
        runs=Path("runs"), split="grouped-f0,grouped-f1", method="m@compute", data=None, unit="sequence", resamples=500
    )
    row = parity_bootstrap.shape_row(args, 4, 0.5, [0, 1])
    assert row["split"] == "grouped-f0+grouped-f1" and row["images"] == 7 and row["groups"] == 4
    assert row["gap"] == pytest.approx((3 * 10 - 4 * 30) / 7, abs=0.01)
    assert row["ci_low"] <= row["gap"] <= row["ci_high"]


@pytest.mark.parametrize("unit", ["sequence", "seed+sequence"])
def test_paired_bootstrap_continues_from_committed_sequences_without_checkpoints(tmp_path, monkeypatch, unit):
    """A fold whose checkpoints are gone is bootstrapped from its committed per-sequence rows: the same gap and
    interval as from the per-image Dice (sequence resampling only uses each sequence's frames and summed gap);
    a seed with neither is refused naming --runs."""
    rng = np.random.default_rng(3)
    groups = ["s1"] * 4 + ["s2"] * 2 + ["s3"] * 5
    dice = {(seed, kind): rng.uniform(0.3, 0.9, len(groups)) for seed in (0, 1) for kind in ("e", "i")}

    def fake_test_dice(folder, subnet, data):
        seed = int(folder.parts[-2].removeprefix("seed"))
        return [f"f{k}" for k in range(len(groups))], groups, dice[seed, "e" if subnet else "i"]

    monkeypatch.setattr(parity_bootstrap, "test_dice", fake_test_dice)
    by_group = tmp_path / "gaps_by_sequence.csv"
    args = argparse.Namespace(
        runs=tmp_path / "runs",
        split="grouped-f1",
        method="m@compute",
        data=None,
        unit=unit,
        resamples=2000,
        by_group_file=by_group,
    )
    monkeypatch.setattr(parity_bootstrap, "trained_here", lambda *a: True)
    arrays = parity_bootstrap.shape_arrays(args, 4, 0.5, [0, 1])
    fresh = parity_bootstrap.shape_row(args, 4, 0.5, [0, 1], arrays)
    rows = [
        {"split": "grouped-f1", "method": "m@compute", "depth": 4, "width": 0.5} | r
        for r in parity_bootstrap.group_rows(*arrays, [0, 1])
    ]
    pd.DataFrame(rows, columns=parity_bootstrap.GROUP_COLUMNS).to_csv(by_group, index=False)
    monkeypatch.setattr(parity_bootstrap, "trained_here", lambda *a: False)
    committed = parity_bootstrap.shape_row(args, 4, 0.5, [0, 1])
    assert committed["images"] == fresh["images"] == len(groups) and committed["groups"] == 3
    for key in ("gap", "ci_low", "ci_high"):
        assert committed[key] == pytest.approx(fresh[key], abs=0.02)
    with pytest.raises(UserError, match="--runs"):
        parity_bootstrap.shape_row(args, 4, 0.5, [0, 1, 2])
    by_group.write_text(by_group.read_text().replace(",4,0.5,0,grouped-f1/s1,4,", ",4,0.5,0,grouped-f1/s1,four,"))
    with pytest.raises(UserError, match="must be numbers"):
        parity_bootstrap.shape_row(args, 4, 0.5, [0, 1])


def test_paired_bootstrap_of_some_shapes_keeps_the_other_shapes_rows(tmp_path):
    """--shapes (a shape whose checkpoint is lost is left out): the new rows replace only their own shapes'."""
    path = tmp_path / "gaps_by_sequence.csv"
    key = {"split": "grouped-f1", "method": "m@compute"}
    old = [
        key
        | {"depth": d, "width": w, "seed": 0, "group": "g", "images": 2, "elastic": 70, "individual": 71, "gap": -1.0}
        for d, w in [(4, 0.5), (5, 1.0)]
    ]
    pd.DataFrame(old, columns=parity_bootstrap.GROUP_COLUMNS).to_csv(path, index=False)
    new = [old[0] | {"seed": 2, "gap": 3.0}]
    every = parity_bootstrap.merged(new, path, ("split", "method", "depth", "width"), parity_bootstrap.GROUP_COLUMNS)
    assert sorted((r["depth"], r["seed"]) for r in every) == [(4, 2), (5, 0)]
    assert runner.parse_shapes("3,0.25;5,1") == [(3, 0.25), (5, 1.0)]
    with pytest.raises(argparse.ArgumentTypeError, match="depth,width pairs"):
        runner.parse_shapes("d5-w1")


@pytest.mark.parametrize("bad", ["", "a", "0,x", "-1", " , ", "0,1,0"])
def test_paper_scripts_name_the_form_of_seeds(bad):
    from runner import seed_list

    with pytest.raises(UserError, match="--seeds"):
        seed_list(bad)
    assert seed_list("0, 2,") == [0, 2]


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--folds", "a"], "--folds 'a': give distinct non-negative integers"),
        (["--folds", "0,0"], "--folds '0,0': give distinct"),  # a fold twice would pool its films twice
        (["--folds", "2"], "splits the films into 2 folds, 0..1"),
        (["--jobs", "0"], "argument --jobs: must be >= 1, got 0"),
        (["--threads", "-1"], "argument --threads: must be >= 0, got -1"),
        (["--flags", "--epochs x"], "cannot read 'x' as int"),
    ],
)
def test_the_mammography_table_refuses_bad_arguments_before_any_training(tmp_path, bad, message):
    data = write_fake_mias(tmp_path / "mias", women=2, size=32)
    config = tmp_path / "m.yaml"
    config.write_text("data: {dataset: auto, split: grouped, folds: 2}\nprofiles: {cpu: {train: {epochs: 1}}}\n")
    command = [sys.executable, str(ROOT / "paper" / "mammography_table.py"), "--data", str(data)]
    command += ["--config", str(config), "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), *bad]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert message in done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_parity_pools_the_grouped_folds_on_the_seeds_that_have_them_all():
    """Grouped folds 0 and 1 pooled: per seed the mean of the folds' gaps, only on seeds with both folds; the
    target row of the pooled split has the folds' mean compute ratio."""
    frame = pd.DataFrame(
        rows("individual", 4, 0.5, [0.70, 0.60], "grouped-f0")
        + rows("arm@compute", 4, 0.5, [0.72, 0.50], "grouped-f0")  # +2, -10 points
        + rows("individual", 4, 0.5, [0.80], "grouped-f1")
        + rows("arm@compute", 4, 0.5, [0.77], "grouped-f1")  # -3 points, seed 0 only
        + rows("individual", 4, 0.5, [0.80], "random")
        + rows("arm@compute", 4, 0.5, [0.80], "random")
    ).assign(train_tflops=1.0)
    gaps = parity_table.paired_gaps(frame, "dice").set_index("split")
    assert set(gaps.index) == {"grouped-f0", "grouped-f1", "grouped-f0+f1", "random"}
    pooled = gaps.loc["grouped-f0+f1"]
    assert pooled.gap == pytest.approx(-0.5) and pooled.seeds == 1  # (2 - 3) / 2; seed 1 lacks fold 1
    assert pooled.elastic == pytest.approx(74.5) and pooled.individual == pytest.approx(75.0)
    assert parity_table.fold_splits("grouped-f0+f1") == ["grouped-f0", "grouped-f1"]
    goals = parity_table.targets(frame, {"grouped-f0": 4e12, "grouped-f1": 2e12, "random": 4e12}).set_index("split")
    assert goals.loc["grouped-f0+f1", "compute_ratio"] == pytest.approx((0.25 + 0.5) / 2)
    assert goals.loc["grouped-f0+f1", "worst_gap"] == pytest.approx(-0.5)
    assert not goals.met.any()  # one of the six table shapes: a campaign half-way meets nothing


def test_parity_gaps_stay_numbers_so_the_tables_round_them():
    """One split, nothing to pool: the gap column stays numeric, so gaps.csv holds it to 2 decimals like the
    other columns (an empty pooled frame once made it an object column, written as 3.8000000000000034)."""
    frame = pd.DataFrame(
        rows("individual", 3, 0.25, [0.6526, 0.70, 0.71], "random")
        + rows("arm@compute", 3, 0.25, [0.6906, 0.69, 0.7025], "random")  # +3.8, -1, -0.75 points
    ).assign(train_tflops=1.0)
    gaps = parity_table.paired_gaps(frame, "dice")
    assert gaps.gap.dtype == float and gaps.individual.dtype == float
    assert gaps.round(2).gap.tolist() == [0.68]
    assert parity_table.seed_gaps(frame, "dice").gap.round(2).tolist() == [3.8, -1.0, -0.75]


def test_parity_lists_each_seeds_paired_gap_whose_mean_is_the_table_gap():
    """tables.md shows the paired test gaps seed by seed (a reviewer sees the spread the mean hides): one column
    per seed, blank where a seed lacks its pair, the pooled folds included; their mean is the gap of the table."""
    frame = pd.DataFrame(
        rows("individual", 4, 0.5, [0.70, 0.60, 0.65], "grouped-f0")
        + rows("arm@compute", 4, 0.5, [0.72, 0.50, 0.66], "grouped-f0")  # +2, -10, +1 points
        + rows("individual", 4, 0.5, [0.80], "grouped-f1")
        + rows("arm@compute", 4, 0.5, [0.77], "grouped-f1")  # -3 points, seed 0 only
    ).assign(train_tflops=1.0)
    table = parity_table.gaps_by_seed(frame, "dice").set_index("split")
    assert list(table.columns) == ["method", "depth", "width", "seed 0", "seed 1", "seed 2"]
    assert table.loc["grouped-f0", ["seed 0", "seed 1", "seed 2"]].tolist() == pytest.approx([2, -10, 1])
    assert table.loc["grouped-f0+f1", "seed 0"] == pytest.approx(-0.5)
    assert table.loc["grouped-f0+f1", ["seed 1", "seed 2"]].isna().all()
    gaps = parity_table.paired_gaps(frame, "dice").set_index("split")
    for split in table.index:
        seeds = table.loc[split, ["seed 0", "seed 1", "seed 2"]].dropna()
        assert gaps.loc[split, "gap"] == pytest.approx(seeds.mean(), abs=0.005)
        assert gaps.loc[split, "seeds"] == len(seeds)


def test_parity_verdict_is_over_the_first_three_seeds_and_later_seeds_are_reported_beside_it():
    """Seeds trained after the protocol's three (more power for a small gap) never enter the verdict, which
    would let a campaign add seeds until a mean crosses the target: gaps and targets are over each split's first
    three seeds, the mean over every seed is listed apart, and a split with only three seeds has no such row."""
    frame = pd.DataFrame(
        rows("individual", 4, 0.5, [0.70, 0.70, 0.70, 0.70, 0.70], "random")
        + rows("arm@compute", 4, 0.5, [0.68, 0.68, 0.68, 0.80, 0.80], "random")  # -2 x3, then +10 x2
        + rows("individual", 4, 0.5, [0.60, 0.60, 0.60], "grouped-f0")
        + rows("arm@compute", 4, 0.5, [0.61, 0.61, 0.61], "grouped-f0")
    ).assign(train_tflops=1.0)
    verdict = parity_table.protocol_seeds(frame)
    assert sorted(verdict[verdict.split == "random"].seed.unique()) == [0, 1, 2]
    gaps = parity_table.paired_gaps(verdict, "dice").set_index("split")
    assert gaps.loc["random", "gap"] == pytest.approx(-2.0) and gaps.loc["random", "seeds"] == 3
    more = parity_table.more_seeds(frame, gaps.reset_index())
    assert more.split.tolist() == ["random"] and more.seeds.tolist() == [5]
    assert more.gap.tolist() == pytest.approx([2.8])
    goal = parity_table.targets(verdict, {"random": 4.0, "grouped-f0": 4.0}).set_index("split")
    assert goal.loc["random", "worst_gap"] == pytest.approx(-2.0)


def test_parity_dry_run_tells_what_is_committed_started_and_left(tmp_path):
    """--dry-run on a campaign half-way: each run committed, started (its last epoch under --runs) or to train,
    and the time left from the committed runs of the same name (per epoch, so a started run counts its rest)."""
    args = argparse.Namespace(out=tmp_path / "out", runs=tmp_path / "runs")
    runs = [parity_table.Run(split, 0, "individual-d3-w1", "individual", (), 100) for split in ("random", "grouped-f0")]
    runs.append(parity_table.Run("grouped-f1", 0, "arm@compute", "arm@compute", (), 50))
    done = args.out / "runs" / "random" / "seed0" / "individual-d3-w1"
    done.mkdir(parents=True)
    (done / "subnets.csv").write_text("depth,width,dice\n3,1.0,0.8\n")
    (done / "record.json").write_text('{"epochs": 100, "train_seconds": 6000.0}')
    started = args.runs / "grouped-f0" / "seed0" / "individual-d3-w1"
    started.mkdir(parents=True)
    (started / "log.csv").write_text("epoch,step,loss\n1,10,0.9\n2,20,0.8\n40,400,0.3\n")
    lines = parity_table.progress(args, runs).splitlines()
    assert lines[0] == "random/seed0/individual-d3-w1: 100 epochs, committed"
    assert lines[1] == "grouped-f0/seed0/individual-d3-w1: 100 epochs, started (epoch 40); about 60 min left"
    assert lines[2] == "grouped-f1/seed0/arm@compute: 50 epochs, to train; no estimate"
    assert lines[3].startswith("1 committed, 1 started, 1 to train; about 1.0 core-hours")
    assert "1 runs without an estimate" in lines[3]


def test_parity_target_is_met_only_with_every_table_shape_and_three_seeds():
    six = [r for d, w in parity_table.TABLE_SHAPES for r in rows("individual", d, w, [0.70] * 3, "random")]
    elastic = [r for d, w in parity_table.TABLE_SHAPES for r in rows("arm@compute", d, w, [0.695] * 3, "random")]
    frame = pd.DataFrame(six + elastic).assign(train_tflops=1.0)
    assert parity_table.targets(frame, {"random": 4e12}).met.tolist() == [True]  # -0.5 everywhere, ratio 0.25
    assert parity_table.targets(frame[frame.seed < 2], {"random": 4e12}).met.tolist() == [False]  # two seeds
    worse = frame.assign(dice=frame.dice.where(~((frame.method != "individual") & (frame.depth == 3)), 0.68))
    assert parity_table.targets(worse, {"random": 4e12}).met.tolist() == [False]  # -2 at depth 3
    assert parity_table.targets(frame[frame.depth != 3], {"random": 4e12}).met.tolist() == [False]


@pytest.mark.parametrize(
    "script, flags, message",
    [
        ("dice_table.py", ["--profile", "nope"], "has no profile 'nope'"),
        ("parity_table.py", ["--profile", "nope"], "has no profile 'nope'"),
        ("parity_table.py", ["--splits", "grouped-f9"], "fold must lie in 0..4"),
        ("mammography_table.py", ["--runs", "../afile"], "is a file, not a folder"),
        ("parity_table.py", ["--runs", "../afile/inside"], "lies inside the file"),
        ("dice_table.py", ["--runs", "../afile"], "is a file, not a folder"),
        ("mammography_table.py", ["--out", "../afile"], "is a file, not a folder"),
        ("parity_table.py", ["--arms", "nope"], "unknown arm(s) ['nope']"),
        ("dice_table.py", ["--split", "nope"], "--split takes random and/or grouped"),
    ],
)
def test_paper_scripts_refuse_a_mistake_in_one_line_from_any_folder(tmp_path, script, flags, message):
    """Run from another folder (the default config is found in the checkout, not the working folder), a mistake
    the user can fix prints one line with the script's name and exits with 2, as the command line does; nothing
    is written."""
    data = write_fake_cvc(tmp_path / "cvc")
    work = tmp_path / "elsewhere"
    work.mkdir()
    (tmp_path / "afile").write_text("a user's file\n")
    folders = ["--runs", str(work / "runs"), "--out", str(work / "out")]
    done = subprocess.run(
        [sys.executable, str(ROOT / "paper" / script), "--data", str(data), *folders, *flags],
        capture_output=True,
        text=True,
        cwd=work,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and message in done.stderr
    assert done.stderr.startswith(f"{script}: error: ")
    assert list(work.iterdir()) == [] and (tmp_path / "afile").read_text() == "a user's file\n"


@pytest.mark.parametrize("profile", ["cpu", "converged-e128", "paper"])
def test_the_cvc_runner_ships_the_recipe_the_parity_campaign_measured_best(profile):
    """``experiments/cvc_clinicdb.yaml`` trains exactly the arm slimmable+junction+table of the studies' base, and
    that base (``paper/cvc_clinicdb_study.yaml``, which every committed study run was made from) is still the
    originating study's recipe, so the committed runs stay reproducible."""
    from elasticnet.config import build_config

    product = build_config(str(ROOT / "experiments" / "cvc_clinicdb.yaml"), {"data": "somewhere"}, profile)
    flags = parity_table.flag_dict(parity_table.ARMS["slimmable+junction+table"])
    arm = build_config(str(parity_table.CONFIG), {"data": "somewhere", **flags}, profile)
    assert product.to_dict() == arm.to_dict()
    base = build_config(str(parity_table.CONFIG), {"data": "somewhere"}, profile)
    assert (base.train.strategy, base.model.junction, base.train.always_subnets) == ("uniform", "shared", [])
    assert dice_table.CONFIG == str(parity_table.CONFIG)


def test_parity_bootstrap_refuses_to_replace_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "notes.csv"
    mine.write_text("patient,comment\n1,keep me\n")
    with pytest.raises(UserError, match="not a table this script wrote"):
        parity_bootstrap.main(["--runs", str(tmp_path), "--out", str(mine)])
    assert mine.read_text() == "patient,comment\n1,keep me\n"
    with pytest.raises(UserError, match="is a folder"):
        parity_bootstrap.main(["--runs", str(tmp_path), "--out", str(tmp_path)])
    parity_bootstrap.check_out_file(ROOT / "results" / "cvc_clinicdb" / "converged-e128" / "bootstrap.csv")


@pytest.mark.parametrize(
    "text", ["{not json", '{"subnets": [{"depth": 5}]}', '{"checkpoint_sha256": "x", "subnets": 3}']
)
def test_a_damaged_committed_evaluation_is_named_with_the_fix(tmp_path, text):
    saved = tmp_path / "evaluation-test.json"
    saved.write_text(text)
    with pytest.raises(UserError, match=r"not an evaluation this script wrote.*move it away"):
        mammography_table.load_evaluation(saved)


def fake_finished_run(folder: Path, shapes, dice: float, seconds: float) -> None:
    """A finished dice_table run with made-up numbers: the files write_results reads."""
    folder.mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"")
    (folder / "split.csv").write_text("image,part\na.png,train\nb.png,test\n")
    (folder / "log.csv").write_text("epoch,seconds\n" + "".join(f"{e},{seconds}\n" for e in range(1, 4)))
    (folder / runner.WALL_NAME).write_text(f'{{"wall_seconds": {3 * seconds + 1}, "threads": 1}}')
    lines = ["depth,width,dice,dice_bn_as_trained,test_dice,test_dice_bn_as_trained,test_iou,test_iou_bn_as_trained"]
    for depth, width in shapes:
        d = dice + depth / 100 + width / 1000
        lines.append(f"{depth},{width},{d + 0.01},{d},{d + 0.02},{d - 0.01},{d / 2 + 0.01},{d / 2}")
    (folder / "subnets.csv").write_text("\n".join(lines) + "\n")


def test_dice_table_writes_every_table_from_finished_runs(tmp_path):
    args = argparse.Namespace(
        splits=["random", "grouped"], seeds=[0, 1], table="all", name="fake", profile="fake", epochs=0, lr=0.0,
        device="cpu", argv=["--data", "x"], report_only=True, runs=str(tmp_path / "runs"), only=[],
        config=dice_table.CONFIG, data="x",
    )  # fmt: skip
    jobs = dice_table.plan(args, 16)
    grid = [(d, w) for d in dice_tables.DEPTHS for w in dice_tables.WIDTHS]
    for k, job in enumerate(jobs[:-1]):  # the last run is unfinished: left out of every table
        shapes = grid if job.training.elastic else [(1, 1.0)]  # a plain U-Net's own subnets.csv row
        fake_finished_run(job.folder, shapes, 0.5 + 0.01 * job.seed + (0.05 if job.training.elastic else 0), 10 + k)
    out = tmp_path / "results"
    dice_table.write_results(args, jobs, out, wall=5.0)
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["split", "method", "depth", "width", "seed", "dice", "iou", "train_seconds"]
    individual = summary[summary.method == "individual"]
    assert len(individual) == 2 * 2 * 6 and set(individual.depth) == {3, 4, 5}  # shape from the training
    assert len(pd.read_csv(out / "runs.csv")) == len(jobs) - 1
    tables = (out / "tables.md").read_text()
    for name in ("table1", "table2", "grid", "targets"):  # each part on its own, and one level down in tables.md
        assert "#" + (out / f"{name}.md").read_text() in tables
    for name in ("table1.png", "table2.png", "grid.png", "table1.csv", "table2.csv", "grid.csv", "splits/random.csv"):
        assert (out / name).is_file(), name
    grid_rows = pd.read_csv(out / "grid.csv")
    assert len(grid_rows) == 2 * 12 and set(grid_rows.split) == {"random", "grouped"}
    commands = (out / runner.MARK).read_text()
    assert "python paper/dice_table.py --data x" in commands and f"{len(jobs) - 1} runs' wall seconds" in commands
    assert commands.count("python -m elasticnet train") == len(jobs)  # every planned training, finished or not
    assert "Wall time of this invocation" not in commands  # a report-only run trains nothing


def test_dice_table_never_rewrites_committed_tables_without_their_runs(tmp_path):
    flags = ["--data", str(tmp_path), "--table", "1", "--split", "random", "--seeds", "0", "--device", "cpu"]
    flags += ["--out", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"), "--report-only"]
    with pytest.raises(UserError, match="no finished run under --runs"):
        dice_table.main(flags)
    assert not (tmp_path / "results").exists()
    jobs = dice_table.plan(dice_table.parse_args(flags), 16)
    for job in jobs:
        fake_finished_run(
            job.folder, [(1, 1.0)] if not job.training.elastic else [(3, 1.0), (4, 1.0), (5, 1.0)], 0.6, 9
        )
    dice_table.main(flags)
    written = {p.name: p.read_bytes() for p in (tmp_path / "results").iterdir() if p.is_file()}
    assert len(pd.read_csv(tmp_path / "results" / "runs.csv")) == len(jobs) == 4
    (jobs[0].folder / "checkpoint.pt").unlink()  # e.g. another machine, where only the committed tables are
    with pytest.raises(UserError, match=r"1 run.* random/seed0/individual-d3-w1: not finished under --runs"):
        dice_table.main(flags)
    with pytest.raises(UserError, match="not planned with --runs"):  # a training of part of the table
        dice_table.main([f for f in flags if f != "--report-only"] + ["--only", "uniform"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "results").iterdir() if p.is_file()} == written


def test_bn_calibration_refuses_to_replace_a_table_when_no_run_is_found(tmp_path):
    import bn_calibration

    out = tmp_path / "results"
    out.mkdir()
    (out / "bn_calibration.csv").write_text("the committed table\n")
    with pytest.raises(UserError, match="no finished run under --runs"):
        bn_calibration.main(["--runs", str(tmp_path / "elsewhere"), "--out", str(out)])
    assert (out / "bn_calibration.csv").read_text() == "the committed table\n"


def fake_precision_run(folder: Path, shift: float) -> None:
    """A finished run of paper/precision_parity.py: its sub-net table and the per-epoch log it reads."""
    folder.mkdir(parents=True)
    rows = [f"{d},{w},{0.70 + shift + 0.01 * d:.4f},{0.60 + shift:.4f}" for d in (3, 4) for w in (0.5, 1.0)]
    (folder / "subnets.csv").write_text("depth,width,test_dice,dice\n" + "\n".join(rows) + "\n")
    (folder / "log.csv").write_text("epoch,seconds,images_per_s\n1,10.0,5.0\n2,10.0,7.0\n")


def test_precision_parity_reports_paired_runs_and_keeps_committed_seeds(tmp_path):
    """--report-only pairs bf16 and fp32 seed by seed; it never creates an out folder it then leaves half-made,
    and never rewrites a parity.csv without a seed it holds (the committed runs are on one machine only)."""
    import precision_parity

    runs, out = tmp_path / "runs", tmp_path / "results"
    flags = ["--report-only", "--runs", str(runs), "--out", str(out)]
    with pytest.raises(UserError, match="no finished runs under --runs"):
        precision_parity.main([*flags, "--seeds", "0,1"])
    assert not out.exists()  # it used to make the folder and its COMMANDS.md first
    for seed in (0, 1):
        fake_precision_run(runs / f"seed{seed}" / "bf16", 0.01 * seed)
        fake_precision_run(runs / f"seed{seed}" / "fp32", 0.01 * seed - 0.02)
    precision_parity.main([*flags, "--seeds", "0,1"])
    parity = pd.read_csv(out / "parity.csv")
    assert len(parity) == 2 * 2 * 4 and set(parity.seed) == {0, 1}
    assert (parity.images_per_s == 6.0).all() and (parity.train_seconds == 20.0).all()
    assert "| 3 | 0.5 | 2 | 71.5 | 73.5 | +2.0 | 0.7 | no |" in (out / "summary.md").read_text()
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UserError, match=r"2 run\(s\).*seed 1 bf16"):
        precision_parity.main([*flags, "--seeds", "0"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    with pytest.raises(SystemExit) as e:
        precision_parity.main([*flags, "--threads", "-1"])
    assert e.value.code == 2


@pytest.mark.slow
def test_calibration_sample_reproduces_the_run_table_and_keeps_other_rows(tmp_path):
    """paper/calibration_sample.py on a tiny elastic run: its own calibration gives the run's subnets.csv
    values, the other samples are as large, every image is the whole training set; a refused --out is left
    alone, and rows of another method survive a rewrite."""
    import calibration_sample
    from helpers import TINY

    method = "arm@compute"
    run = tmp_path / "runs" / "random" / "seed0" / method
    flags = [*TINY, "--epochs", "1", "--test-fraction", "0.25", "--out", str(run)]
    assert subprocess.run([sys.executable, "-m", "elasticnet", "train", *flags], cwd=ROOT).returncode == 0
    out = tmp_path / "calibration_sample.csv"
    out.write_text("split,method\nmine,mine\n")
    argv = ["--runs", str(tmp_path / "runs"), "--seeds", "0", "--method", method, "--shapes", "3,0.5;2,1"]
    with pytest.raises(UserError, match="not a table this script wrote"):
        calibration_sample.main([*argv, "--out", str(out)])
    assert out.read_text() == "split,method\nmine,mine\n"
    out.unlink()
    pd.DataFrame([dict.fromkeys(calibration_sample.COLUMNS, 1) | {"method": "other"}]).to_csv(out, index=False)
    calibration_sample.main([*argv, "--orders", "2", "--out", str(out)])
    rows = pd.read_csv(out)
    assert (rows.method == "other").sum() == 1
    mine = rows[rows.method == method].set_index(["depth", "width", "calibration"])
    assert len(mine) == 2 * 4 and set(mine.index.get_level_values(2)) == {"run", "order1001", "order1002", "all"}
    table = pd.read_csv(run / "subnets.csv").set_index(["depth", "width"])
    for depth, width in [(3, 0.5), (2, 1.0)]:
        assert mine.loc[(depth, width, "run"), "val_dice"] == pytest.approx(
            100 * table.loc[(depth, width), "dice"], abs=0.02
        )
        assert mine.loc[(depth, width, "run"), "test_dice"] == pytest.approx(
            100 * table.loc[(depth, width), "test_dice"], abs=0.02
        )
    assert (mine.xs("order1001", level=2).images == mine.xs("run", level=2).images).all()
    assert (mine.xs("all", level=2).images > mine.xs("run", level=2).images).all()
    with pytest.raises(UserError, match="no sub-net"):
        calibration_sample.main([*argv[:-1], "5,1", "--out", str(tmp_path / "x.csv")])
    with pytest.raises(UserError, match="no checkpoint of random/seed1"):
        calibration_sample.main([*argv, "--seeds", "0,1", "--out", str(tmp_path / "x.csv")])


@pytest.mark.slow
def test_training_time_table_from_a_tiny_synthetic_training(tmp_path):
    from helpers import TINY

    out = tmp_path / "results"
    flags = ["--config", str(ROOT / "experiments" / "synthetic.yaml"), "--processes", "1", "--target-dice", "0.0"]
    flags += ["--name", "tiny", "--out", str(out), "--runs", str(tmp_path / "runs"), "--", *TINY, "--epochs", "2"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "paper" / "training_time.py"), *flags], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    table = pd.read_csv(out / "table.csv")
    assert table.processes.tolist() == [1] and table.epochs.tolist() == [2]
    assert (table.s_per_epoch >= 0).all() and (table.wall_s > 0).all()  # tiny epochs round to 0.0 s
    assert table.s_to_target.astype(float).le(table.train_s).all()  # a target of 0 is reached in the first epoch
    assert (out / "seconds_per_epoch.png").is_file()
    assert runner.invocations(out) == [runner.script_command("training_time.py", flags)]
    report = (out / "table.md").read_text()
    assert "Hardware: " in report and "Python " in report and "CPU: " in report and "; has " in report
    listed = (out / "table.md").read_text().split("```")[1].strip()
    assert listed.startswith("OMP_NUM_THREADS=") and " python -m elasticnet train " in listed  # pasteable


@pytest.mark.parametrize(
    "flags",
    [
        ["--epochs", "abc"],
        ["--epochs", "64,0"],
        ["--epochs", "64,64"],
        ["--lr", "fast"],
        ["--lr", "nan"],
        ["--lr", "inf"],
    ],
)
def test_convergence_names_the_form_of_epochs_and_learning_rates(flags, capsys):
    with pytest.raises(SystemExit) as e:
        convergence.parse_args(["--report-only", *flags])
    assert e.value.code == 2 and "give distinct positive numbers separated by commas" in capsys.readouterr().err
    assert convergence.parse_args(["--report-only", "--epochs", "128,64", "--lr", "0.002"]).epochs == [128, 64]


def test_convergence_reports_nothing_for_a_profile_without_convergence_runs(tmp_path, monkeypatch):
    """A profile whose E came from another profile's curves (converged-e128) has only its parity runs: a
    report-only run must not write a one-point 'E not determined' report into its committed folder."""
    real = convergence.study
    monkeypatch.setattr(convergence, "study", lambda profile: real(profile, results=tmp_path))
    parity = tmp_path / "converged-e128" / "runs" / "random" / "seed0" / "individual-d5-w1"
    fake_convergence_run(parity, 0.86)
    (tmp_path / "converged-e128" / runner.MARK).write_text("# Commands\n")  # a parity script's folder
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UserError, match="holds no convergence runs"):
        convergence.main(["--profile", "converged-e128", "--report-only", "--runs", str(tmp_path / "none")])
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    fake_convergence_run(tmp_path / "converged-e128" / "convergence-runs" / "e256" / "individual-d5-w1", 0.865)
    convergence.main(["--profile", "converged-e128", "--report-only", "--runs", str(tmp_path / "none")])
    assert (tmp_path / "converged-e128" / "convergence.md").is_file()


def test_probe_subnets_names_the_form_of_the_image_count(capsys):
    import probe_subnets

    with pytest.raises(SystemExit) as e:  # argparse, before any checkpoint is read
        probe_subnets.main(["--checkpoint", "anything", "--images", "0"])
    assert e.value.code == 2 and "must be >= 1, got 0" in capsys.readouterr().err


def test_gaps_by_sequence_add_up_to_the_gap_and_find_the_sequence_that_carries_it():
    """One hard sequence where the elastic sub-net loses 20 points, four where it ties: the per-sequence rows
    name it, and their image-weighted mean is the split's gap, per seed."""
    groups = [f"s{k}" for k in range(5) for _ in range(10)]
    rng = np.random.default_rng(4)
    individual = [rng.uniform(0.6, 0.9, 50) for _ in range(2)]
    elastic = [i - np.where(np.array(groups) == "s3", 0.2, 0.0) for i in individual]
    rows = parity_bootstrap.group_rows(elastic, individual, groups, seeds=[0, 7])
    assert [(r["seed"], r["group"]) for r in rows] == [(s, f"s{k}") for s in (0, 7) for k in range(5)]
    assert {r["group"]: r["gap"] for r in rows if r["seed"] == 7} == {"s0": 0, "s1": 0, "s2": 0, "s3": -20, "s4": 0}
    for seed, e, i in zip((0, 7), elastic, individual):
        mine = [r for r in rows if r["seed"] == seed]
        weighted = sum(r["gap"] * r["images"] for r in mine) / sum(r["images"] for r in mine)
        assert weighted == pytest.approx((e - i).mean() * 100, abs=0.01)
        assert all(r["elastic"] - r["individual"] == pytest.approx(r["gap"], abs=0.02) for r in mine)


def test_sequence_gap_map_sorts_hardest_first_and_its_last_column_is_the_split_gap(tmp_path):
    """The heat map's table: a column per sequence, the one the individual nets find hardest first, the seed
    mean in each cell, and an ``all`` column equal to the frame-weighted gap; the PNG is written."""
    rows = []
    for seed, shift in ((0, -4.0), (1, -2.0)):
        for depth, width in ((3, 0.25), (5, 1.0)):
            for group, images, individual in (("f/easy", 30, 90.0), ("f/hard", 10, 40.0), ("f/mid", 20, 70.0)):
                gap = shift * 5 if group == "f/hard" else 1.0
                rows.append(
                    dict(
                        split="grouped-f0",
                        method="m",
                        depth=depth,
                        width=width,
                        seed=seed,
                        group=group,
                        images=images,
                        elastic=individual + gap,
                        individual=individual,
                        gap=gap,
                    )
                )
    frame = pd.DataFrame(rows)
    table, labels = sequence_gaps.panel(frame)
    assert list(table.columns) == ["f/hard", "f/mid", "f/easy", "all"]
    assert labels == ["hard\n10", "mid\n20", "easy\n30", "all\n60"]
    assert table.loc[(3, 0.25), "f/hard"] == pytest.approx(-15.0)  # (-20 + -10) / 2 seeds
    assert table.loc[(5, 1.0), "all"] == pytest.approx((-15.0 * 10 + 1.0 * 50) / 60)
    out = sequence_gaps.plot(frame, tmp_path / "map.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match=r"parity_bootstrap\.py --by-group"):
        sequence_gaps.plot(frame.iloc[:0], tmp_path / "empty.png")
