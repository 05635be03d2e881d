"""Reliability: exact resume after an interruption (signal or SIGKILL), the run lock, non-finite losses,
and damaged checkpoints, exports and images.

The fault-injection tests draw their fault points at random from a fixed seed. ``ELASTICNET_FAULTS=N``
runs N faults of each kind instead of the quick default (as for the figures in the issue's note).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import torch
from helpers import TINY_CONFIG, write_folder_dataset

from elasticnet.checkpoint import load_checkpoint, save_checkpoint
from elasticnet.config import RunConfig, build_config
from elasticnet.data.folder import find_samples
from elasticnet.data.records import load_records
from elasticnet.errors import UserError
from elasticnet.export.export import export_subnet, load_exported
from elasticnet.models import ElasticUNet, ElasticUNetConfig
from elasticnet.training import step, trainer
from elasticnet.training.run_dir import run_lock
from elasticnet.training.signals import TrainingInterrupted

FAULTS = int(os.environ.get("ELASTICNET_FAULTS", "0"))
BASE = {**TINY_CONFIG, "epochs": "2", "checkpoint_every": "2"}
QUIET = {"echo": lambda s: None, "progress": False}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoint.pt")["model"]


def _same(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _interrupt_at(monkeypatch, call: int) -> None:
    """Send this process SIGTERM during the ``call``-th training step."""
    original, calls = step.forward_backward, {"n": 0}

    def forward_backward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(step, "forward_backward", forward_backward)


# --- exact resume ----------------------------------------------------------------------------------------

PARITY_RECIPE = {
    "strategy": "sandwich",
    "always_subnets": "d2-w1",
    "random_by_flops": True,
    "weight_smallest": "0.5",
    "shrink_start": "0.1",
    "width_start": "0.3",
    "ramp": "0.25",
    "distill": True,
    "distill_teacher": "ema",
    "distill_loss": "bce",
    "distill_start": "0.25",
    "optimizer": "sgd",
    "lr": "0.05",
    "lr_floor": "0.1",
    "grad_clip": "1",
}


@pytest.mark.parametrize(
    "variant",
    [{}, {"patch_size": "16x16", "strategy": "sandwich", "distill": True}, PARITY_RECIPE, {"augment_on": "device"}],
    ids=["whole-images", "patches-sandwich-distill", "phases-ema-teacher-sgd-clip", "augmented-on-device"],
)
def test_resume_after_signals_equals_an_uninterrupted_run(tmp_path, monkeypatch, variant):
    settings = {**BASE, **variant}
    reference = trainer.train(build_config(None, {**settings, "out": str(tmp_path / "ref")}), **QUIET)
    run = tmp_path / "run"
    # Stop in the middle of epoch 1 (step 3, between saves), at the end of epoch 1 (step 4) and in the
    # last step (8): three interruptions of one run, each resumed from what it saved.
    with monkeypatch.context() as m:
        _interrupt_at(m, 3)
        with pytest.raises(TrainingInterrupted, match="--resume") as stopped:
            trainer.train(build_config(None, {**settings, "out": str(run)}), **QUIET)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert load_checkpoint(run / "last.pt")["step"] == 3 and not (run / "checkpoint.pt").exists()
    for call in (1, 4):  # counted from the resumed step: steps 4 and 8
        with monkeypatch.context() as m:
            _interrupt_at(m, call)
            with pytest.raises(TrainingInterrupted):
                trainer.resume(run, **QUIET)
    trainer.resume(run, **QUIET)
    assert _same(reference, run)
    a, b = load_checkpoint(reference / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert a["subnets"] == b["subnets"] and a["bn_stats"].keys() == b["bn_stats"].keys()
    assert [r["train_loss"] for r in a["log"]] == [r["train_loss"] for r in b["log"]]
    assert not (run / "last.pt").exists()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "elasticnet", *args]


def _settings_flags(settings: dict[str, str]) -> list[str]:
    return [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]


def _epochs_logged(run: Path) -> int:
    """The epochs a run folder's log.csv records (written atomically at the end of each epoch)."""
    log = run / "log.csv"
    return max(0, len(log.read_text().splitlines()) - 1) if log.is_file() else 0


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_gives_the_same_weights(tmp_path):
    """Kill a training subprocess with SIGKILL at random moments, resume each time, compare the weights."""
    target = FAULTS or 3
    epochs = 4 * max(1, target // 3)
    settings = {**BASE, "epochs": str(epochs), "checkpoint_every": "1", "synthetic_count": "64"}
    flags = [*_settings_flags(settings), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    start, startup = time.monotonic(), None
    ref = subprocess.Popen(_cli("train", *flags, f"--out={tmp_path / 'ref'}"), env=env, stdout=subprocess.DEVNULL)
    while ref.poll() is None:
        if startup is None and (tmp_path / "ref" / "config.yaml").exists():
            startup = time.monotonic() - start  # imports and data set-up
        time.sleep(0.02)
    assert ref.returncode == 0
    full = time.monotonic() - start
    startup = startup or full / 2
    # Kill moments spread over start-up (sometimes before anything is saved) and training, scaled so that
    # about ``target`` kills fit into one run.
    low, high = 0.5 * startup, startup + 2 * (full - startup) / target
    run, kills, attempts = tmp_path / "run", 0, 0
    rng = np.random.default_rng(0)
    while not (run / "checkpoint.pt").exists():
        attempts += 1
        assert attempts < 2 * target + 10, "the run never finished"
        command = (
            _cli("train", "--resume", str(run), "--quiet")
            if (run / "config.yaml").exists()
            else _cli("train", *flags, f"--out={run}")
        )
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if kills < target:
            # at a random moment, and at the latest once the run has logged all its epochs but one per kill still
            # to come: every kill lands before the run can finish, however the machine's load changes its speed
            deadline = time.monotonic() + float(rng.uniform(low, high))
            latest = epochs - (target - kills)
            while proc.poll() is None and time.monotonic() < deadline and _epochs_logged(run) < latest:
                time.sleep(0.01)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        _, err = proc.communicate()
        assert proc.returncode == 0, err.decode()
    assert kills == target, "a run finished before its kills landed"
    assert _same(tmp_path / "ref", run)
    print(f"{kills} SIGKILLs at random moments, the resumed run's weights equal the uninterrupted run's")


@pytest.mark.slow
def test_sigterm_saves_state_and_exits_with_128_plus_signal(tmp_path):
    flags = [*_settings_flags({**BASE, "epochs": "6", "checkpoint_every": "1"}), "--quiet", f"--out={tmp_path / 'r'}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(_cli("train", *flags), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (tmp_path / "r" / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert "stopped by SIGTERM" in err.decode() and "--resume" in err.decode() and "Traceback" not in err.decode()
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] >= 1


# --- refusals -------------------------------------------------------------------------------------------


def test_a_second_training_in_a_locked_folder_is_refused(tmp_path):
    with run_lock(tmp_path / "r"):
        with pytest.raises(UserError, match="in use by another training"):
            trainer.train(build_config(None, {**BASE, "out": str(tmp_path / "r")}), **QUIET)


def test_resume_refusals(tmp_path, monkeypatch, capsys):
    with pytest.raises(UserError, match="no such run folder"):
        trainer.resume(tmp_path / "nowhere", **QUIET)
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(TrainingInterrupted):
            trainer.train(build_config(None, {**BASE, "out": str(tmp_path / "r")}), **QUIET)
    with pytest.raises(UserError, match="holds an unfinished run; continue it with"):
        trainer.train(build_config(None, {**BASE, "out": str(tmp_path / "r")}), **QUIET)
    from elasticnet.checkpoint import resolve_checkpoint
    from elasticnet.cli import main

    assert main(["train", "--resume", str(tmp_path / "r"), "--lr", "0.1"]) == 2
    # an unfinished run is named as such where a finished checkpoint is asked for; its state can be read
    with pytest.raises(UserError, match=r"has not finished .*train --resume .*or pass .*last\.pt"):
        resolve_checkpoint(tmp_path / "r")
    capsys.readouterr()
    assert main(["info", str(tmp_path / "r" / "last.pt")]) == 0
    assert "the training state of an unfinished run" in capsys.readouterr().out
    # an edited config.yaml: another model (the weights would not load) or another recipe (silently changed)
    config = tmp_path / "r" / "config.yaml"
    written, state = config.read_text(), (tmp_path / "r" / "last.pt").read_bytes()
    for old, new in (("base_width: 8", "base_width: 16"), ("lr: 0.002", "lr: 0.5")):
        assert old in written
        config.write_text(written.replace(old, new))
        with pytest.raises(
            UserError, match=rf"config.yaml differs .*: \w+\.{old.split(':')[0]} .*Put config.yaml back"
        ):
            trainer.resume(tmp_path / "r", **QUIET)
        assert (tmp_path / "r" / "last.pt").read_bytes() == state
    config.write_text(written)
    trainer.resume(tmp_path / "r", **QUIET)
    with pytest.raises(UserError, match="already finished"):
        trainer.resume(tmp_path / "r", **QUIET)


def _interrupted_folder_run(tmp_path: Path, monkeypatch) -> Path:
    """A run on a 12-image folder data set (``tmp_path/data``) stopped in its first step, in ``tmp_path/r``."""
    data = write_folder_dataset(tmp_path / "data", count=12, size=(32, 32))
    settings = {**BASE, "data": str(data), "dataset": "folder", "out": str(tmp_path / "r")}
    with monkeypatch.context() as m:
        _interrupt_at(m, 1)
        with pytest.raises(TrainingInterrupted):
            trainer.train(build_config(None, settings), **QUIET)
    return data


def test_resume_on_other_data_is_refused(tmp_path, monkeypatch):
    data = _interrupted_folder_run(tmp_path, monkeypatch)
    (data / "images" / "12.png").unlink()
    (data / "masks" / "12.png").unlink()
    with pytest.raises(UserError, match="data differ from those the run started with"):
        trainer.resume(tmp_path / "r", **QUIET)


def test_resume_after_the_data_moved_takes_their_new_place(tmp_path, monkeypatch):
    """The data folder moved between the stop and the resume: refused naming --data; with it the run goes on
    and its checkpoint records the new place; other flags are still refused."""
    import shutil

    from elasticnet.cli import main

    data = _interrupted_folder_run(tmp_path, monkeypatch)
    moved = tmp_path / "elsewhere"
    shutil.move(data, moved)
    with pytest.raises(UserError, match=r"does not exist any more; .* --resume .*r --data NEW-PLACE"):
        trainer.resume(tmp_path / "r", **QUIET)
    assert main(["train", "--resume", str(tmp_path / "r"), "--data", str(moved), "--lr", "0.1"]) == 2
    trainer.resume(tmp_path / "r", data=str(moved), **QUIET)
    assert load_checkpoint(tmp_path / "r" / "checkpoint.pt")["config"]["data"]["data"] == str(moved)


def test_eval_after_the_data_moved_takes_their_new_place(tmp_path, capsys):
    """A finished run whose data folder moved: eval of its validation split is refused naming --run-data; with
    it the split is rebuilt at the new place (and checked against split.csv); with --data it is refused."""
    import shutil

    from elasticnet.cli import main

    data = write_folder_dataset(tmp_path / "data", count=12, size=(32, 32))
    settings = {**BASE, "data": str(data), "dataset": "folder", "out": str(tmp_path / "r")}
    trainer.train(build_config(None, settings), **QUIET)
    moved = tmp_path / "elsewhere"
    shutil.move(data, moved)
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(tmp_path / "r")]) == 2
    assert "give its new place with --run-data NEW-PLACE" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--run-data", str(moved), "--data", str(moved)]) == 2
    assert "give --run-data alone" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--run-data", str(tmp_path / "nowhere")]) == 2
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--run-data", str(moved)]) == 0
    assert "the run's validation split" in capsys.readouterr().out
    (moved / "images" / "1.png").unlink()
    (moved / "masks" / "1.png").unlink()
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--run-data", str(moved)]) == 2
    assert "gone" in capsys.readouterr().err


def test_a_split_is_the_same_when_its_parts_are_the_same(tmp_path):
    """Only the parts matter: new groups for the same parts pass; an image added, gone or moved, and a file
    that is not a split.csv, are refused with what changed."""
    from elasticnet.reporting import write_csv
    from elasticnet.training.run_dir import check_same_split

    saved = [{"name": str(i), "group": str(i), "split": "val" if i < 2 else "train"} for i in range(5)]
    path = write_csv(saved, tmp_path / "split.csv")
    check_same_split([r | {"group": "g"} for r in saved], path)  # a group file added after a random split
    with pytest.raises(UserError, match=r"lists 5 images, the data now give 6 \(1 new, 0 gone, 0 in another"):
        check_same_split([*saved, {"name": "5", "group": "5", "split": "val"}], path)
    with pytest.raises(UserError, match=r"\(0 new, 1 gone, 1 in another part; e.g. '4'\); resume needs"):
        check_same_split([saved[1] | {"split": "train"}, *saved[2:4], saved[0]], path)
    (tmp_path / "split.csv").write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"is not a split\.csv written by elasticnet"):
        check_same_split(saved, path)


def test_a_finished_runs_split_is_rebuilt_only_from_the_data_it_was_trained_on(tmp_path):
    """eval, export --int8 and the paper scripts rebuild a run's split from its data: an image added since
    training would reshuffle the parts (training images scored as validation or test): refused; a folder
    without split.csv is not checked."""
    import shutil

    from elasticnet.config import DataConfig
    from elasticnet.data import build_datasets
    from elasticnet.reporting import write_csv
    from elasticnet.training.run_dir import run_split

    data = write_folder_dataset(tmp_path / "data", count=12, size=(32, 32))
    cfg = RunConfig(data=DataConfig(data=str(data), image_size=[32, 32]))
    run = tmp_path / "run"
    run.mkdir()
    write_csv(build_datasets(cfg.data, 3, cfg.train.seed).rows, run / "split.csv")
    assert len(run_split(cfg, run, "why").val) == len(build_datasets(cfg.data, 3, cfg.train.seed).val)
    for part in ("images", "masks"):
        shutil.copy(data / part / "1.png", data / part / "13.png")
    with pytest.raises(UserError, match=r"lists 12 images, the data now give 13 \(1 new.*\); why"):
        run_split(cfg, run, "why")
    (run / "split.csv").unlink()
    assert len(run_split(cfg, run, "why").rows) == 13


def test_non_finite_loss_stops_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    from elasticnet.training.losses import TaskLoss

    original, calls = TaskLoss.__call__, {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        value = original(*args, **kwargs)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setattr(TaskLoss, "__call__", loss)
    with pytest.raises(UserError, match=r"loss became nan.*kept the last good training state"):
        # one sub-net per step, so the third loss is the third step's
        trainer.train(build_config(None, {**BASE, "strategy": "uniform", "out": str(tmp_path / "r")}), **QUIET)
    state = load_checkpoint(tmp_path / "r" / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


# --- damaged files ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory) -> Path:
    cfg = RunConfig.from_dict(
        {"model": {"base_width": 4, "depths": [2, 3], "widths": [0.5, 1.0]}, "data": {"image_size": [16, 16]}}
    )
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(
        path, cfg, ElasticUNet(ElasticUNetConfig(base_width=4, depths=[2, 3], widths=[0.5, 1.0])), subnets=[], step=0
    )
    return path


def test_truncated_checkpoints_give_clear_errors(saved_checkpoint, tmp_path):
    data = saved_checkpoint.read_bytes()
    offsets = np.random.default_rng(1).integers(0, len(data), FAULTS or 8)
    for offset in offsets:
        path = tmp_path / f"cut-{offset}.pt"
        path.write_bytes(data[:offset])
        with pytest.raises(UserError, match=r"not a readable elasticnet checkpoint|is corrupted"):
            load_checkpoint(path)
    print(f"{len(offsets)} truncated checkpoints, {len(offsets)} clear errors")


def test_altered_checkpoint_fails_its_content_hash(saved_checkpoint, tmp_path):
    ckpt = torch.load(saved_checkpoint, weights_only=True)
    key = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][key] = ckpt["model"][key] + 1e-3  # a plausible file whose content no longer matches its hash
    torch.save(ckpt, tmp_path / "edited.pt")
    with pytest.raises(UserError, match="is corrupted"):
        load_checkpoint(tmp_path / "edited.pt")


def test_a_pickle_that_runs_code_is_refused_as_checkpoint(tmp_path):
    import pickle

    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"format": "elasticnet-checkpoint", "x": Evil()}, path)  # torch's own zip format, with the payload
    with pytest.raises(UserError, match="may be malicious; it was not loaded") as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value)  # never the advice to switch the check off
    path.write_bytes(pickle.dumps({"format": "elasticnet-checkpoint", "x": Evil()}))  # a bare pickle
    with pytest.raises(UserError, match="not a readable elasticnet checkpoint") as e:
        load_checkpoint(path)
    assert "weights_only" not in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c.pop("model"),
        lambda c: c.pop("config"),
        lambda c: c.update(step="three"),
        lambda c: c.update(subnets=[1, 2]),
        lambda c: c.update(model={"encoder.0.conv1.weight": "text"}),
    ],
    ids=["no-model", "no-config", "step-text", "rows-not-tables", "weights-not-tensors"],
)
def test_a_checkpoint_with_a_valid_hash_but_a_wrong_structure_is_refused(saved_checkpoint, tmp_path, edit):
    from elasticnet.checkpoint import HASH_KEY, content_hash

    ckpt = load_checkpoint(saved_checkpoint)
    edit(ckpt)
    ckpt[HASH_KEY] = content_hash(ckpt)  # re-hashed: only the structure check can tell
    path = tmp_path / "edited.pt"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="not a complete elasticnet checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("target", ["cpu", "torch"])
def test_truncated_exports_give_clear_errors(saved_checkpoint, tmp_path, target):
    bundle = export_subnet(saved_checkpoint, 2, 1.0, target, tmp_path / "bundle", echo=lambda s: None)
    model_file = bundle / ("model.onnx" if target == "cpu" else "model.pt")
    files = {model_file: model_file.read_bytes(), bundle / "model.json": (bundle / "model.json").read_bytes()}
    rng, count = np.random.default_rng(2), 0
    for path, data in files.items():
        for offset in rng.integers(0, len(data), FAULTS or 4):
            path.write_bytes(data[:offset])
            with pytest.raises(UserError):
                load_exported(bundle)
            count += 1
        path.write_bytes(data)
    load_exported(bundle)  # intact again
    print(f"{count} truncated export files, {count} clear errors")


def _corrupt(path: Path, kind: str, rng: np.random.Generator) -> None:
    data = path.read_bytes()
    if kind == "random-bytes":
        path.write_bytes(rng.bytes(int(rng.integers(1, 2000))))
    elif kind == "truncated":
        path.write_bytes(data[: int(rng.integers(0, len(data) // 2))])
    elif kind == "wrong-size":
        image = np.zeros((24, 40, 3), np.uint8)
        if path.suffix == ".tif":
            tifffile.imwrite(path, image)
        else:
            cv2.imwrite(str(path), image)
    elif kind == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_corrupt_images_are_all_reported_by_name(tmp_path, suffix):
    rng = np.random.default_rng(3)
    kinds = ["random-bytes", "truncated", "wrong-size", "empty"]
    rounds, reported = FAULTS or 1, 0
    for r in range(rounds):
        root = write_folder_dataset(tmp_path / f"d{r}", count=8, size=(32, 32), suffix=suffix)
        broken = {}
        for i, kind in enumerate(kinds):
            path = root / "images" / f"{i + 1}{suffix}"
            _corrupt(path, kind, rng)
            broken[path.name] = kind
        with pytest.raises(UserError) as e:
            load_records(find_samples(root), 3, (32, 32), root)
        message = str(e.value)
        assert f"{len(kinds)} problem(s)" in message, message
        for name in broken:
            assert name in message, (name, broken[name], message)
        reported += len(kinds)
    print(f"{reported} corrupt {suffix} files, {reported} named in one clear error")


def _masks_dataset(root: Path, lesion_images: int, value: int) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(12):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        mask = np.zeros((32, 32), np.uint8)
        if i < lesion_images:
            mask[4:16, 4:16] = value
        cv2.imwrite(str(root / "masks" / f"{i}.png"), mask)
    return root


def test_masks_saved_as_0_and_1_are_lesions_not_empty(tmp_path):
    root = _masks_dataset(tmp_path / "ds", 12, 1)
    _, masks = load_records(find_samples(root), 3, (32, 32), root)
    assert all(m.max() == 255 and (m > 0).sum() == 144 for m in masks)


def test_a_split_without_lesions_finishes_with_a_blank_lesion_column(tmp_path):
    """Every validation mask empty (normal films only), one training mask with a lesion: the run ends with a
    checkpoint and a table whose lesion Dice is blank, instead of crashing at the end (and on every --resume).
    With no lesion in any training mask the run is refused before it starts, leaving no run folder."""
    from elasticnet.data import build_datasets

    root = _masks_dataset(tmp_path / "ds", 0, 255)
    cfg = build_config(
        None, {**BASE, "data": str(root), "max_steps": "2", "batch_size": "4", "out": str(tmp_path / "r")}
    )
    with pytest.raises(UserError, match="marks a lesion"):
        trainer.train(cfg, **QUIET)
    assert not (tmp_path / "r").exists()
    train_name = build_datasets(cfg.data, 3, 0).train.names[0]
    mask = np.zeros((32, 32), np.uint8)
    mask[4:16, 4:16] = 255
    cv2.imwrite(str(root / "masks" / f"{train_name}.png"), mask)
    run = trainer.train(cfg, **QUIET)
    rows = list(csv.DictReader(open(run / "subnets.csv")))
    assert (run / "checkpoint.pt").is_file() and rows and all(r["dice_lesion"] == "" for r in rows)
    assert "nan" not in (run / "subnets.md").read_text().lower()
