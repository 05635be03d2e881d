"""Running the trainings of a paper script: the command, a new run or the resumption of a stopped one, many
at a time, and the record of where and how they ran.

Shared by the scripts that queue many trainings (``dice_table.py``, ``parity_table.py``,
``mammography_table.py``), so that an interrupted campaign continues the same way everywhere.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from checkout import ROOT

from elasticnet.errors import UserError
from elasticnet.files import atomic_write_text, lock_is_held
from elasticnet.run_files import LOCK_NAME, STATE_NAME

WALL_NAME = "wall_seconds.json"  # wall seconds of a run, summed over its attempts
Job = TypeVar("Job")

# why a script refuses a run whose split no longer matches its data (elasticnet.training.run_dir.run_split)
NEEDS_SAME_DATA = (
    "the run's train, validation and test images must be those it was trained and tested on: restore the data it "
    "was trained on (or give their new place with --data where the script takes it)"
)


def index_list(text: str, flag: str = "--seeds", example: str = "0,1,2") -> list[int]:
    """``--seeds 0,1,2`` (or ``--folds``) as a list of distinct non-negative integers (a clear exit for anything
    else: a number named twice would count its runs twice in a pooled table)."""
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0 or len(set(values)) < len(values):
        raise UserError(f"{flag} {text!r}: give distinct non-negative integers separated by commas, e.g. {example}")
    return values


def seed_list(text: str) -> list[int]:
    return index_list(text, "--seeds", "0,1,2")


def parse_shapes(text: str) -> list[tuple[int, float]]:
    """``--shapes`` of the paper scripts: depth,width pairs separated by ';' ('3,0.25;5,1')."""
    try:
        shapes = [(int(d), float(w)) for d, w in (s.split(",") for s in text.split(";") if s.strip())]
    except ValueError:
        shapes = []
    if not shapes:
        raise argparse.ArgumentTypeError(f"{text!r}: give depth,width pairs separated by ';', e.g. '3,0.25;5,1'")
    return shapes


def train_command(
    config: str | Path, profile: str, data: str, flags: Sequence[str], device: str, out: Path
) -> list[str]:
    """The ``elasticnet train`` command of one run: an experiment config and profile, the run's flags."""
    return [
        sys.executable,
        "-m",
        "elasticnet",
        "train",
        "--config",
        str(config),
        "--profile",
        profile,
        "--data",
        str(data),
        *flags,
        "--device",
        device,
        "--out",
        str(out),
        "--quiet",
    ]


def planned_tflops(command: Sequence[str], device_type: str = "cuda") -> tuple[int, float]:
    """(optimiser steps, training TFLOPs) a training command will run on a ``device_type``, counted from its
    config and recipe before it starts (:func:`elasticnet.training.recipe.planned_flops`; the data folder is
    listed, nothing decoded). For projecting a table's time from a measured TFLOP/s."""
    from elasticnet.config import resolve_for_device
    from elasticnet.data.build import split_sizes
    from elasticnet.training.recipe import planned_flops
    from elasticnet.training.setup import step_counts

    cfg = resolve_for_device(planned_config(command), device_type)
    batch, steps, total = step_counts(cfg, split_sizes(cfg.data)["train"])
    size = cfg.data.tile or tuple(cfg.data.image_size)
    return total, planned_flops(cfg, steps, batch, -(-total // steps), size) / 1e12


# Keys that say where or how fast a run goes, not what it learns: a run folder reused from another machine,
# data path or loader setting is still the same recipe. A sentinel (0 / auto) filled in when the run started
# is compared only when the planned value names one.
WHERE_KEYS = {
    "data.data",
    "data.num_workers",
    "data.cache",
    "train.out",
    "train.device",
    "train.checkpoint_every",
    "train.eval_batch_size",
}
FILLED_AT_START = {"model.channel_multiple": 0, "data.augment_on": "auto"}


def planned_config(command: Sequence[str]):
    """The :class:`~elasticnet.config.RunConfig` a training command will run (nothing is read but its config);
    a command whose config is not valid stops the script with the config's message."""
    from elasticnet.cli import build_parser
    from elasticnet.cli.train import config_overrides
    from elasticnet.config import build_config

    args = build_parser().parse_args(list(command[3:]))  # after: python -m elasticnet
    try:
        return build_config(args.config, config_overrides(args), args.profile)
    except UserError as e:
        raise UserError(f"the training command ({' '.join(command[4:])}) is not a valid config: {e}") from None


def recipe_differences(command: Sequence[str], folder: Path) -> list[str]:
    """``section.key: saved -> planned`` for every key in which the run saved in ``folder`` (its
    ``config.yaml``) differs from what ``command`` would train; empty when the folder holds no config yet or the
    same recipe. Where the run goes (:data:`WHERE_KEYS`) is not compared."""
    from elasticnet.config import RunConfig, load_yaml

    saved_file = folder / "config.yaml"
    if not saved_file.is_file():
        return []
    planned = planned_config(command).to_dict()
    try:
        saved = RunConfig.from_saved(load_yaml(saved_file), source=str(saved_file)).to_dict()
    except UserError as e:  # written by another version of the package
        return [f"config.yaml cannot be read as this version's config ({e})"]
    changes = []
    for section, values in planned.items():
        for key, value in values.items():
            name = f"{section}.{key}"
            if name in WHERE_KEYS or FILLED_AT_START.get(name, object()) == value:
                continue
            if saved[section][key] != value:
                changes.append(f"{name}: {saved[section][key]!r} -> {value!r}")
    return changes


def check_same_recipe(command: Sequence[str], folder: Path) -> None:
    """Refuse to resume or reuse the run in ``folder`` when ``command`` asks for another recipe (an edited
    profile, other flags under the same run name): its results would be reported as the new recipe's."""
    changes = recipe_differences(command, folder)
    if changes:
        raise UserError(
            f"{folder} holds a run of another recipe than this command's ({'; '.join(changes)}); give this "
            "recipe another run name (or --runs folder), or move that folder away to train it again"
        )


def child_env(threads: int) -> dict[str, str]:
    """The environment of a training or evaluation subprocess: this checkout's package, ``threads`` threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}


def run_logged(command: list[str], threads: int, log: Path, what: str) -> None:
    """Run ``command`` with its output appended to ``log``; a failure stops the script with the log's end."""
    with open(log, "a") as out:
        done = subprocess.run(command, env=child_env(threads), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"{what} failed (exit {done.returncode}); the end of {log}:\n  " + "\n  ".join(tail))


def train_or_resume(command: list[str], folder: Path, threads: int, log: Path, device: str = "auto") -> float:
    """Run ``command`` (an ``elasticnet train`` that writes ``folder``) with ``threads`` threads, its output
    appended to ``log``; a folder with a saved training state is resumed instead, and one stopped before its
    first save (made by the script, holding nothing to continue) is started again. Returns the run's wall
    seconds summed over its attempts (also kept in ``folder/wall_seconds.json``)."""
    if lock_is_held(folder / LOCK_NAME):
        raise UserError(f"{folder} is being trained by another process; wait for it or stop it")
    check_same_recipe(command, folder)
    if (folder / STATE_NAME).is_file():
        command = [sys.executable, "-m", "elasticnet", "train", "--resume", str(folder), "--device", device, "--quiet"]
    elif folder.exists():
        shutil.rmtree(folder)  # stopped before its first save: nothing to continue
    folder.mkdir(parents=True, exist_ok=True)
    wall_file = folder / WALL_NAME
    before = json.loads(wall_file.read_text())["wall_seconds"] if wall_file.exists() else 0.0
    start = time.perf_counter()
    try:
        run_logged(command, threads, log, f"training {folder}")
    finally:
        wall = before + time.perf_counter() - start
        atomic_write_text(wall_file, json.dumps({"wall_seconds": round(wall, 1), "threads": threads}))
    return wall


def run_pool(jobs: Sequence[Job], workers: int, run: Callable[[Job, Callable[[str], None]], None]) -> None:
    """``run(job, say)`` for every job, ``workers`` at a time, in the given order; ``say`` prints a progress
    line (elapsed time, jobs done). The first failure stops the script once the running jobs end."""
    start, count = time.perf_counter(), [0]

    def say(line: str) -> None:
        if line.startswith("done"):
            count[0] += 1
        print(f"[{time.perf_counter() - start:7.0f} s  {count[0]}/{len(jobs)}] {line}", flush=True)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        for future in [pool.submit(run, job, say) for job in jobs]:
            future.result()


def git_commit() -> str:
    """The checkout's commit (and whether it has uncommitted changes), for the record of a result."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def hardware_text(device: str) -> str:
    """One line naming the machine the results were made on."""
    import torch

    from elasticnet.export.measure import machine

    text = (
        f"Hardware: {machine()}; {platform.platform()}; Python {platform.python_version()}; torch {torch.__version__}"
    )
    if device != "cpu" and torch.cuda.is_available():
        text += f"; GPU {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    return text + "."


MARK = "COMMANDS.md"  # every results folder a paper script writes holds the commands that made it
TRAININGS = "\n\nTrainings"  # in a COMMANDS.md, the invocations stand above this line, each run's own below


def script_command(script: str, argv: Sequence[str]) -> str:
    """How a reader repeats this run of ``paper/<script>`` from the repository root: this checkout's absolute
    paths made relative, each argument shell-quoted."""
    return " ".join(["python", f"paper/{script}", *(shlex.quote(a.replace(f"{ROOT}/", "")) for a in argv)])


def _commands_file(out: Path) -> tuple[list[str], str]:
    """``out``'s COMMANDS.md read once: the commands listed at its head, oldest first, and the rest of the file
    from :data:`TRAININGS` on (empty when it has none)."""
    path = out / MARK
    head, sep, tail = (path.read_text() if path.is_file() else "").partition(TRAININGS)
    return [line.strip() for line in head.splitlines()[1:] if line.strip()], sep + tail


def invocations(out: Path) -> list[str]:
    """The commands listed at the head of ``out``'s COMMANDS.md, oldest first (none if it has none)."""
    return _commands_file(out)[0]


def write_commands(out: Path, commands: Sequence[str], tail: str = "") -> None:
    """Write ``out``'s COMMANDS.md: ``commands`` (each once, in order) at the head, then ``tail`` (which starts
    with :data:`TRAININGS` when there is one)."""
    listed = "\n".join(f"    {c}" for c in dict.fromkeys(commands))
    atomic_write_text(out / MARK, "# Commands\n\n" + listed + (tail or "\n"))


def note_invocation(out: Path, command: str) -> None:
    """Add ``command`` to the invocations at the head of ``out``'s COMMANDS.md, once, keeping the rest of the
    file (a folder two scripts share keeps both scripts' commands)."""
    listed, rest = _commands_file(out)
    write_commands(out, [*listed, command], rest)


def check_out_folder(out: Path, flag: str = "--out") -> None:
    """Refuse (:class:`~elasticnet.errors.UserError`), before any work, an ``out`` that is a file, or an existing
    folder holding files that no paper script wrote (no COMMANDS.md): the script would overwrite files it did
    not create."""
    if out.is_dir() and any(out.iterdir()) and not (out / MARK).is_file():
        raise UserError(
            f"{flag} {out} holds files that no paper script wrote (it has no {MARK}); give a new or empty folder"
        )
    check_folder(out, flag)


def check_folder(folder: Path, flag: str = "--runs") -> None:
    """Refuse (:class:`~elasticnet.errors.UserError`), before any work, a ``folder`` that is a file, lies inside
    one, or cannot be written."""
    from elasticnet.files import prepare_outputs

    prepare_outputs(folder, [], flag=flag)


def check_out_csv(path: Path, name: str, own_header: Callable[[list[str]], bool]) -> None:
    """Refuse (:class:`~elasticnet.errors.UserError`), before any work, an ``--out`` CSV that is a folder, or an
    existing file whose header ``own_header`` does not accept (a file the script did not write: its rows would be
    replaced). ``name``: the file to suggest inside a folder."""
    if path.is_dir():
        raise UserError(f"--out {path} is a folder; give the CSV file to write (e.g. {path / name})")
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if not own_header(header):
            raise UserError(f"--out {path} is not a table this script wrote; give a new file")


def claim_out_folder(out: Path, flag: str = "--out") -> None:
    """:func:`check_out_folder`, then make ``out`` with a first, empty COMMANDS.md (the script fills it in when
    it finishes), so that the folder of an interrupted script is still recognised as its own when run again."""
    check_out_folder(out, flag)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARK).is_file():
        atomic_write_text(out / MARK, "# Commands\n")
