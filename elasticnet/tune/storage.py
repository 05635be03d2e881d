"""Where a study lives, and the lock that makes claiming its next trial atomic.

``--storage`` is either a database URL (``sqlite:///study.db``, ``postgresql://...``; Optuna's RDB
storage, for clusters with a database) or a file path: Optuna's journal file storage, which needs no
server and works on a shared file system (it appends to one file under Optuna's open-lock, which is
safe on NFS).

Workers also share the study's output folder. Counting the study's trials and asking for the next one
happens under an exclusive ``flock`` on ``OUT/.claim.lock``, so two workers never both start the last
trial; each running trial holds ``OUT/trial-NNNN/.trial.lock`` for as long as its worker lives, which is
how a dead worker's trial is recognised (:mod:`elasticnet.tune.worker`).
"""

from __future__ import annotations

import json
from pathlib import Path

from elasticnet.errors import UserError


def open_storage(spec: str):
    import optuna

    if "://" in spec:
        try:
            return optuna.storages.RDBStorage(spec)
        except Exception as e:  # sqlalchemy raises many types for a bad URL or an unreachable server
            raise UserError(f"cannot open the study database {spec!r}: {str(e)[:200]}") from None
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = check_journal(Path(spec))
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def check_journal(path: Path) -> Path:
    """A journal file path: new, or a journal Optuna wrote (it appends to it; any other file is the user's,
    and appending a study to it would spoil it)."""
    if path.is_dir():
        raise UserError(f"--storage {path} is a folder; give a file path (journal) or a database URL")
    if not path.exists() or path.stat().st_size == 0:
        return path
    try:
        with open(path, "rb") as f:
            first = json.loads(f.readline(1 << 20))
    except (OSError, ValueError):
        first = None
    if not isinstance(first, dict) or "op_code" not in first:
        raise UserError(
            f"--storage {path} exists and is not an Optuna journal; give a new file (the study's journal is made "
            "there), the journal of an earlier study, or a database URL"
        )
    return path
