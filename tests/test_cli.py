"""End to end through the command line: train -> export -> eval -> info, and the user errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from helpers import TINY, write_folder_dataset

from elasticnet.checkpoint import load_checkpoint
from elasticnet.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["train", *TINY, "--max-steps", "6", "--out", str(run)]) == 0
    return run


def test_train_writes_a_self_describing_run(trained_run):
    for name in ("checkpoint.pt", "config.yaml", "log.csv", "subnets.csv", "subnets.md", "split.csv", "curve.png"):
        assert (trained_run / name).is_file(), name
    ckpt = load_checkpoint(trained_run / "checkpoint.pt")
    assert ckpt["config"]["model"]["depths"] == [2, 3] and ckpt["step"] == 6
    assert [(r["depth"], r["width"]) for r in ckpt["subnets"]] == [(2, 0.5), (2, 1.0), (3, 0.5), (3, 1.0)]
    assert set(ckpt["bn_stats"]) == {"d2-w0.5", "d2-w1", "d3-w0.5", "d3-w1"}
    assert (trained_run / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(trained_run.glob(".*tmp")), "no temporary files left"


@pytest.mark.parametrize("target", ["cpu", "torch"])
def test_export_then_eval_matches_the_checkpoint(trained_run, tmp_path, capsys, target):
    out = tmp_path / f"export-{target}"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(trained_run),
                "--depth",
                "2",
                "--width",
                "0.5",
                "--target",
                target,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    description = json.loads((out / "model.json").read_text())
    assert description["subnet"] == {"depth": 2, "width": 0.5, "key": "d2-w0.5"}
    assert description["input"]["height"] == 32 and description["input"]["mean"] == [0.485, 0.456, 0.406]
    assert description["training_config"]["model"]["base_width"] == 8
    assert len(description["source_checkpoint"]["sha256"]) == 64
    if target == "cpu":
        assert description["check"]["max_abs_diff_vs_torch"] <= 1e-4
    capsys.readouterr()
    assert main(["eval", "--model", str(out)]) == 0
    exported = capsys.readouterr().out
    assert main(["eval", "--checkpoint", str(trained_run), "--depth", "2", "--width", "0.5"]) == 0
    from_checkpoint = capsys.readouterr().out
    dice_export = float(exported.split("Dice ")[1].split()[0])
    row = next(line.split() for line in from_checkpoint.splitlines() if line.strip().startswith("2"))
    assert dice_export == pytest.approx(float(row[2]), abs=1e-4)
    # the table stored at training time says the same
    stored = next(
        r for r in load_checkpoint(trained_run / "checkpoint.pt")["subnets"] if r["depth"] == 2 and r["width"] == 0.5
    )
    assert dice_export == pytest.approx(stored["dice"], abs=1e-4)
    assert main(["info", str(out)]) == 0
    assert "depth 2, width 0.5" in capsys.readouterr().out


def test_eval_recalibrate_refuses_other_data(trained_run, capsys):
    assert main(["eval", "--checkpoint", str(trained_run), "--recalibrate", "--depth", "2"]) == 2
    assert "drop --data/--depth/--width" in capsys.readouterr().err


def test_info_on_checkpoint(trained_run, capsys):
    assert main(["info", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "depths [2, 3]" in out and "dice" in out


def test_export_defaults_to_newest_run(trained_run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").symlink_to(trained_run.parent)
    assert main(["export", "--depth", "3"]) == 0
    out = capsys.readouterr().out
    assert "using the newest checkpoint" in out and "width 1" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["export", "--depth", "5"], "has no depth 5"),
        (["export", "--depth", "2", "--width", "0.25"], "not trained at width 0.25"),
        (["eval", "--depth", "7"], "has no depth 7"),
    ],
)
def test_subnet_errors(trained_run, capsys, argv, message):
    assert main([*argv, "--checkpoint", str(trained_run)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_bad_checkpoint_gives_clear_error(tmp_path, capsys):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"\x00" * 100)
    assert main(["export", "--checkpoint", str(bad), "--depth", "3"]) == 2
    assert "not a readable elasticnet checkpoint" in capsys.readouterr().err
    torch.save({"format": "something-else"}, bad)
    assert main(["info", str(bad)]) == 2
    assert "not an elasticnet checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--depth", "3"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data", "/no/such/folder"], "does not exist"),
        (["--data", __file__], "is a file, not a folder"),
        (["--image-size", "30x32"], "not divisible by 4"),
        (["--strategy", "random"], "invalid choice: 'random' (choose from 'uniform', 'sandwich', 'slimmable')"),
        (["--depths", "1,2"], "depths must be integers >= 2"),
    ],
)
def test_train_user_errors_leave_nothing_behind(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    try:
        code = main(["train", *TINY, "--max-steps", "1", "--out", str(out), *argv])
    except SystemExit as e:  # refused by the parser (a word outside an option's vocabulary)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_train_refuses_to_overwrite_a_finished_run(trained_run, capsys):
    assert main(["train", *TINY, "--max-steps", "1", "--out", str(trained_run)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def test_train_on_a_folder_dataset(tmp_path):
    root = write_folder_dataset(tmp_path / "data", count=8, size=(40, 48))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(root), "--max-steps", "2", "--out", str(out)]) == 0
    split = (out / "split.csv").read_text().splitlines()
    assert len(split) == 9 and split[0] == "name,group,split"


def test_module_entry_point_runs():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "elasticnet", "--version"],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=True,
    )
    assert out.stdout.startswith("elasticnet ")


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--lr", "-1", "lr must be > 0"),
        ("--lr", "nan", "lr must be > 0"),
        ("--weight-decay", "-1", "weight_decay"),
        ("--num-workers", "-2", "num_workers"),
        ("--seed", "-1", "seed must be >= 0"),
        ("--base-width", "100000", "base_width"),
        ("--max-steps", "-1", "max_steps"),
        ("--calib-batches", "0", "calib_batches"),
        ("--threshold", "2", "threshold"),
        ("--threshold", "1", "threshold"),
        ("--std", "0,0,0", "std must be positive"),
        ("--image-size", "99999x32", "sides"),
    ],
)
def test_numeric_options_out_of_range_are_refused_before_anything_is_written(tmp_path, capsys, flag, value, message):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *TINY,
                flag,
                value,
                "--max-steps" if flag != "--max-steps" else "--epochs",
                "1",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--checkpoint", "x", "--batch-size", "0"],
        ["measure", "--repeats", "0"],
        ["export", "--depth", "3", "--int8", "--calib-images", "0"],
    ],
)
def test_command_counts_below_one_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and "must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["measure", "--batch", "0"], "--batch: must be >= 1, got 0"),
        (["measure", "--threads", "-1"], "--threads: must be >= 0, got -1"),
        (["predict", "--model", "b", "x.png", "--threads", "-1"], "--threads: must be >= 0"),
        (["export", "--depth", "3", "--threads", "-2"], "--threads: must be >= 0"),
        (["export", "--budget-ms", "0"], "--budget-ms: must be a number > 0, got 0"),
        (["export", "--budget-mflops", "nan"], "--budget-mflops: must be a number > 0"),
        (["export", "--budget-mb", "inf"], "--budget-mb: must be a number > 0"),
        (["export", "--budget-params", "many"], "--budget-params: 'many' is not a number"),
        (["export", "--depth", "3", "--int8", "--int8-max-drop", "-1"], "--int8-max-drop: must be a number >= 0"),
        (["tune", "--study", "s", "--storage", "j.log", "--trials", "0"], "--trials: must be >= 1, got 0"),
        (["tune", "--study", "s", "--storage", "j.log", "--trials", "1", "--threads", "-5"], "--threads: must be >= 0"),
    ],
)
def test_thread_counts_budgets_and_allowed_losses_out_of_range_are_refused_by_the_parser(argv, message, capsys):
    """Negative thread counts were a torch RuntimeError traceback (tune) or silently the default (measure,
    export, predict); a budget of 0 or nan profiled every sub-net before saying none fits; --batch 0 measured
    batch 1 only."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_outputs_follow_the_umask_and_relative_data_is_stored_absolute(tmp_path, monkeypatch):
    import cv2

    from elasticnet.data.synthetic import synthetic_polyp_set

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    images, masks = synthetic_polyp_set(12, 32, 32, seed=0)
    for i, (image, mask) in enumerate(zip(images, masks)):
        cv2.imwrite(str(data / "images" / f"{i}.png"), image)
        cv2.imwrite(str(data / "masks" / f"{i}.png"), mask)
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o027)
    try:
        assert main(["train", *TINY, "--data", "data", "--max-steps", "1", "--out", "run"]) == 0
        assert main(["export", "--checkpoint", "run", "--depth", "3", "--target", "torch", "--out", "bundle"]) == 0
    finally:
        os.umask(old)
    assert (tmp_path / "run" / "config.yaml").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "bundle").stat().st_mode & 0o777 == 0o750
    assert (tmp_path / "bundle" / "model.json").stat().st_mode & 0o777 == 0o640
    assert f"data: {data}" in (tmp_path / "run" / "config.yaml").read_text()
    monkeypatch.chdir(tmp_path / "bundle")  # eval from elsewhere finds the data
    assert main(["eval", "--checkpoint", str(tmp_path / "run")]) == 0


def test_a_file_in_the_way_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    for out in (tmp_path / "file", tmp_path / "file" / "run"):
        assert main(["train", *TINY, "--max-steps", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err and "choose another" in err
    assert (tmp_path / "file").read_text() == "mine"


def test_os_errors_become_one_line_with_a_way_out():
    import errno

    from elasticnet.cli import os_error_message

    message = os_error_message(OSError(errno.ENOSPC, "No space left on device", "/data/run/last.pt"))
    assert message == "No space left on device (/data/run/last.pt); free some disk space, or write elsewhere"


def test_eval_on_another_folder_recognises_it_instead_of_using_the_runs_reader(tmp_path, capsys):
    """A run trained with the CVC-ClinicDB reader, evaluated on a plain images/ + masks/ folder whose files are
    not frame numbers: read as a plain folder (it was refused as 'named by frame id')."""
    from helpers import write_fake_cvc

    cvc = write_fake_cvc(tmp_path / "cvc")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *TINY,
                "--data",
                str(cvc),
                "--dataset",
                "cvc-clinicdb",
                "--split",
                "grouped",
                "--max-steps",
                "1",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    other = write_folder_dataset(tmp_path / "other", count=4, size=(32, 32))
    for i, name in enumerate(["a", "b", "c", "d"], 1):
        for part in ("images", "masks"):
            (other / part / f"{i}.png").rename(other / part / f"case_{name}.png")
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--data", str(other)]) == 0
    assert "all 4 images" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, command, unknown",
    [
        (["predict", "--model", "m", "x.png", "--threshold", "2"], "predict", "--threshold 2"),
        (["--bogus", "train"], "train", "--bogus"),
        (["profile", "--bogus"], "measure", "--bogus"),  # the former name of measure
    ],
)
def test_an_unknown_option_is_named_by_its_command_with_its_usage(argv, command, unknown, capsys):
    from elasticnet.cli import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"usage: elasticnet {command}" in err
    assert f"elasticnet {command}: error: unrecognized arguments: {unknown}" in err
