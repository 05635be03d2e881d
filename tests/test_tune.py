"""Hyper-parameter search: parallel workers on one journal file, dead workers, objectives, the space."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState  # noqa: E402

from elasticnet.errors import UserError  # noqa: E402
from elasticnet.subnet_row import SubnetRow  # noqa: E402
from elasticnet.tune.objective import final_values  # noqa: E402
from elasticnet.tune.space import check_space  # noqa: E402
from elasticnet.tune.worker import TuneSettings, open_study, run_worker  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = "--base-width 8 --depths 2,3 --widths 0.5,1 --image-size 32x32 --synthetic-count 32 --epochs 2 --calib-batches 1 --batch-size 8".split()
SPACE = (
    "search:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
    "  strategy: {type: categorical, choices: [uniform, sandwich]}\n"
)


def _worker(tmp_path: Path, study: str, trials: int, *extra: str) -> subprocess.Popen:
    config = tmp_path / "space.yaml"
    config.write_text(SPACE)
    command = [
        sys.executable,
        "-m",
        "elasticnet",
        "tune",
        "--config",
        str(config),
        "--study",
        study,
        "--storage",
        str(tmp_path / "study.log"),
        "--trials",
        str(trials),
        "--tune-out",
        str(tmp_path / "out"),
        "--quiet",
        "--threads",
        "1",
        *TINY,
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _load(tmp_path: Path, study: str):
    return optuna.load_study(
        study_name=study,
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "study.log"))),
    )


@pytest.mark.slow
def test_two_workers_share_one_journal_and_run_every_trial_once(tmp_path):
    workers = [_worker(tmp_path, "s", 5, "--no-pruning") for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = _load(tmp_path, "s")
    assert [t.number for t in study.trials] == [0, 1, 2, 3, 4]  # none lost, none extra
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    run_dirs = [t.user_attrs["run_dir"] for t in study.trials]
    assert len(set(run_dirs)) == 5 and all((Path(d) / "checkpoint.pt").exists() for d in run_dirs)
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 5  # no duplicate proposals
    ran = sorted(int(o.split("this worker ran ")[1].split(";")[0]) for o in outputs)
    assert sum(ran) == 5, outputs
    summary = tmp_path / "out" / "summary"
    assert {"trials.csv", "best.csv", "history.png"} <= {p.name for p in summary.iterdir()}


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_failed_and_resumed(tmp_path):
    victim = _worker(tmp_path, "k", 2, "--no-pruning", "--epochs", "4")
    deadline = time.monotonic() + 120
    while not (tmp_path / "out" / "trial-0000" / "last.pt").exists():
        assert victim.poll() is None and time.monotonic() < deadline, victim.communicate()[0]
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    survivor = _worker(tmp_path, "k", 2, "--no-pruning", "--epochs", "4")
    output = survivor.communicate(timeout=300)[0]
    assert survivor.returncode == 0, output
    assert "its worker is gone; marked failed and queued a retry that resumes" in output
    study = _load(tmp_path, "k")
    dead = study.trials[0]
    assert dead.state == TrialState.FAIL and dead.user_attrs["worker_died"]
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["run_dir"] == dead.user_attrs["run_dir"]  # resumed in place
    counted = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(counted) == 2


def test_multi_objective_and_objective_choice(tmp_path):
    config = tmp_path / "space.yaml"
    config.write_text("search:\n  base_width: {type: categorical, choices: [4, 8]}\n")
    settings = TuneSettings(
        study="m",
        storage=str(tmp_path / "m.log"),
        trials=2,
        out=tmp_path / "out",
        config=str(config),
        objective="smallest",
        multi=True,
        overrides={
            "depths": "2,3",
            "widths": "0.5,1",
            "image_size": "32x32",
            "synthetic_count": "24",
            "epochs": "1",
            "calib_batches": "1",
        },
    )
    assert run_worker(settings, echo=lambda s: None) == 2
    study = open_study(settings)
    assert len(study.directions) == 2 and all(len(t.values) == 2 for t in study.trials)
    assert (tmp_path / "out" / "summary" / "best.csv").exists()
    assert run_worker(settings, echo=lambda s: None) == 0  # a study's own folder and journal are taken back
    with pytest.raises(UserError, match="was started with"):
        open_study(
            TuneSettings(
                study="m",
                storage=str(tmp_path / "m.log"),
                trials=2,
                out=tmp_path / "out",
                config=str(config),
                objective="largest",
                multi=True,
            )
        )


@pytest.mark.parametrize(
    "case, message",
    [
        ("storage", "is not an Optuna journal"),
        ("folder", r"holds files a study does not write \(notes.txt, summary/report.docx\)"),
        ("name", "give a plain name"),
        ("path name", "give a plain name"),
    ],
)
def test_a_refused_worker_touches_no_file_of_the_user(tmp_path, case, message):
    """A text file as --storage (Optuna would append a study to it), a --tune-out holding the user's own files,
    or a study name that is no folder name: refused before the study is opened, every file as it was, no
    journal made."""
    notes, out = tmp_path / "notes.txt", tmp_path / "mine"
    notes.write_text("my notes\n")
    (out / "summary").mkdir(parents=True)
    (out / "summary" / "report.docx").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    settings = TuneSettings(
        study={"name": " ", "path name": "../x"}.get(case, "s"),
        storage=str(notes if case == "storage" else tmp_path / "new.log"),
        trials=1,
        out=out if case == "folder" else tmp_path / "study",
        overrides={"depths": "2", "widths": "1", "image_size": "32x32", "synthetic_count": "8", "epochs": "1"},
    )
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=message):
        run_worker(settings, echo=lambda s: None)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "new.log").exists() and not (tmp_path / "study").exists()


def test_final_values():
    base = dict(depth=3, width=1.0, channels="8-16-32", params=1, iou=0.0, dice_bn_as_trained=0.0)
    base |= dict(calib_batches=1, val_images=4)
    rows = [SubnetRow(dice=d, mflops=m, **base) for d, m in ((0.5, 10.0), (0.7, 30.0), (0.9, 80.0))]
    assert final_values(rows, "smallest", False) == [0.5]
    assert final_values(rows, "largest", True) == [0.9, 80.0]
    assert final_values(rows, "mean", True) == [pytest.approx(0.7), pytest.approx(40.0)]


@pytest.mark.parametrize(
    "space, message",
    [
        ({"nope": {"type": "float", "low": 0, "high": 1}}, "not a config key"),
        ({"lr": {"type": "float", "low": 1, "high": 0.1}}, "low < high"),
        ({"lr": {"type": "float", "low": "abc", "high": 0.1}}, "must be numbers"),
        ({"lr": {"type": "float", "high": 0.1}}, "needs low and high"),
        ({"lr": {"type": "categorical", "choices": 5}}, "non-empty choices"),
        ({"lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"lr": {"low": 0.1, "high": 1}}, "needs type"),
        ({"strategy": {"type": "categorical", "choices": []}}, "non-empty choices"),
        ({"out": {"type": "categorical", "choices": ["a"]}}, "describes the study"),
    ],
)
def test_bad_search_spaces_are_refused(space, message):
    with pytest.raises(UserError, match=message):
        check_space(space, "test.yaml")


def test_parallel_workers_each_claim_a_gpu_of_their_own(tmp_path, monkeypatch):
    """With several GPUs visible, each live worker holds its own cuda:i (a lock file in the study folder);
    with one GPU or none nothing is claimed and the config's device stands."""
    from contextlib import ExitStack

    import torch

    from elasticnet.tune.worker import claim_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with ExitStack() as a, ExitStack() as b:
        first, second = claim_gpu(tmp_path, a), claim_gpu(tmp_path, b)
        assert {first, second} == {"cuda:0", "cuda:1"}
    with ExitStack() as c:  # the others have ended: their GPUs are free again
        assert claim_gpu(tmp_path, c) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with ExitStack() as d:
        assert claim_gpu(tmp_path, d) is None
