"""The run folder: what it holds, who may write to it, and whether it can be resumed.

A run folder holds ``config.yaml`` from the start, ``last.pt`` (the training state, rewritten
atomically every ``checkpoint_every`` steps and at every epoch end) while training, and
``checkpoint.pt`` (the finished model with its sub-net table) at the end. One training at a time may
write to a folder: :func:`run_lock` takes an exclusive ``flock`` on ``.lock`` for the whole run, which
the kernel releases when the process dies in any way (SIGKILL included), so no stale lock survives a
crash. (``flock`` is advisory and local; on network file systems without lock support it protects only
against a second training on the same node.)
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from elasticnet.config import RunConfig, save_yaml
from elasticnet.errors import UserError
from elasticnet.files import exclusive_lock
from elasticnet.reporting import read_csv, write_csv
from elasticnet.run_files import CHECKPOINT_NAME, CONFIG_NAME, LOCK_NAME, RUN_OUTPUTS, SPLIT_NAME, STATE_NAME


def run_dir_for(out: str) -> Path:
    """``--out``, or ``runs/<date-time>-<pid>`` when it is empty (two runs started in one second differ)."""
    return Path(out) if out else Path("runs") / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse a folder that holds a run, finished or not (call it holding :func:`run_lock`)."""
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"run folder {run_dir} already holds a finished run; choose another --out or delete it")
    if (run_dir / STATE_NAME).exists() or (run_dir / CONFIG_NAME).exists():
        raise UserError(
            f"run folder {run_dir} holds an unfinished run; continue it with "
            f"`elasticnet train --resume {run_dir}`, or choose another --out (or delete it)"
        )
    taken = [name for name in RUN_OUTPUTS if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    if taken:  # a user's own files that a run would replace
        raise UserError(
            f"{run_dir} already holds {', '.join(taken)}, which a training run writes; choose another --out "
            "(an empty or new folder)"
        )


def resumable_run(path: str | Path) -> Path:
    """The folder of an interrupted run, or a clear reason why ``path`` cannot be resumed."""
    run_dir = Path(path)
    if run_dir.name in (STATE_NAME, CHECKPOINT_NAME) and run_dir.is_file():
        run_dir = run_dir.parent
    if not run_dir.is_dir():
        raise UserError(f"cannot resume {run_dir}: no such run folder")
    if (run_dir / CHECKPOINT_NAME).exists():
        raise UserError(f"run {run_dir} has already finished ({CHECKPOINT_NAME} is there); nothing to resume")
    if not (run_dir / CONFIG_NAME).exists():
        raise UserError(
            f"cannot resume {run_dir}: it holds no {CONFIG_NAME} (the run stopped before it started "
            "training); start it again with the same command"
        )
    return run_dir


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files a killed writer left behind (``.NAME.*.tmp``, see
    :func:`elasticnet.files.atomic_write`); call it holding :func:`run_lock`."""
    stale = [p for p in run_dir.glob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) for the duration; refuse if another
    process holds it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"the run folder {run_dir} is a file, not a folder; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("fcntl") is None:  # not POSIX: no locking
        yield
        return
    path = run_dir / LOCK_NAME
    with exclusive_lock(path, wait=False) as fd:
        if fd is None:
            holder = path.read_text(errors="replace").strip() or "another process"
            raise UserError(
                f"run folder {run_dir} is in use by another training ({holder}); wait for it to "
                "finish, or choose another --out"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        yield


def check_same_split(rows: list[dict], path: Path, needs: str = "resume needs the same images and split") -> None:
    """Refuse to go on (resume, re-evaluate) on data that differ from those the run started with: the split
    rebuilt from them (``rows``: name, group, split) puts other images in its parts than ``path`` does. Groups
    alone may change (a group file added after a random split): the parts are what training and evaluation use."""
    saved_rows = read_csv(path)
    if not all({"name", "split"} <= set(r) for r in saved_rows):
        raise UserError(f"{path} is not a split.csv written by elasticnet (name, group, split); {needs}")
    saved = {r["name"]: r["split"] for r in saved_rows}
    now = {str(r["name"]): str(r["split"]) for r in rows}
    if saved == now:
        return
    new, gone = sorted(now.keys() - saved.keys()), sorted(saved.keys() - now.keys())
    moved = sorted(n for n in now.keys() & saved.keys() if now[n] != saved[n])
    example = (new or gone or moved)[0]
    raise UserError(
        f"the data differ from those the run started with: {path} lists {len(saved)} images, the data now give "
        f"{len(now)} ({len(new)} new, {len(gone)} gone, {len(moved)} in another part; e.g. {example!r}); {needs}"
    )


def run_split(cfg: RunConfig, run_dir: Path, needs: str):
    """The split of the run in ``run_dir``, rebuilt from ``cfg``'s data, refused (naming ``needs``) where it
    differs from the run's split.csv: images added, removed or renamed since training would otherwise move
    between the parts, and a "validation" or "test" score would count training images. A run folder without
    split.csv (a checkpoint copied elsewhere) is not checked."""
    from elasticnet.data import build_datasets

    split = build_datasets(cfg.data, cfg.model.in_channels, cfg.train.seed)
    if (run_dir / SPLIT_NAME).is_file():
        check_same_split(split.rows, run_dir / SPLIT_NAME, needs)
    return split


def open_run_dir(run_dir: Path, cfg: RunConfig, split_rows: list[dict], resuming: bool) -> str | None:
    """Start the run folder (config.yaml, split.csv; refused if it holds another run's files), or check a
    resumed one still sees the same split. Returns the refusal's message (None: go on), so that under
    torchrun rank 0 can pass it to every rank."""
    try:
        if resuming:
            remove_stale_temporaries(run_dir)
            check_same_split(split_rows, run_dir / SPLIT_NAME)
        else:
            check_new_run_dir(run_dir)
            save_yaml(cfg, run_dir / CONFIG_NAME)
            write_csv(split_rows, run_dir / SPLIT_NAME)
    except UserError as e:
        return str(e)
    return None
