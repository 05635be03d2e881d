"""Running one training of a paper script: a new run, or the resumption of one that was stopped.

Shared by the scripts that queue many trainings (``parity_table.py``, ``mammography_table.py``), so that an
interrupted campaign continues the same way everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticnet.files import lock_is_held  # noqa: E402
from elasticnet.run_files import LOCK_NAME, STATE_NAME  # noqa: E402


def train_or_resume(command: list[str], folder: Path, threads: int, log: Path, device: str = "auto") -> float:
    """Run ``command`` (an ``elasticnet train`` that writes ``folder``) with ``threads`` threads, its output
    appended to ``log``; a folder with a saved training state is resumed instead, and one stopped before its
    first save (made by the script, holding nothing to continue) is started again. Returns the wall seconds."""
    if lock_is_held(folder / LOCK_NAME):
        raise SystemExit(f"{folder} is being trained by another process")
    if (folder / STATE_NAME).is_file():
        command = [sys.executable, "-m", "elasticnet", "train", "--resume", str(folder), "--device", device, "--quiet"]
    elif folder.exists():
        shutil.rmtree(folder)  # stopped before its first save: nothing to continue
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with open(log, "a") as out:
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"training {folder} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start
