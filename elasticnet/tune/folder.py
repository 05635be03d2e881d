"""The study folder (``--tune-out``): what a study writes there, and the check that it writes nothing else.

Workers of one study share the folder: ``trial-NNNN/`` (one run folder per trial), ``summary/`` (the study's
tables and plots), ``.claim.lock`` (claiming the next trial) and ``.gpu-<i>.lock`` (one GPU per worker). A
folder that holds anything else is someone's own folder, and ``tune`` refuses it before the study is even
opened, so that it never writes among (or over) files it did not create.
"""

from __future__ import annotations

import re
from pathlib import Path

from elasticnet.errors import UserError

CLAIM_LOCK = ".claim.lock"
TRIAL_LOCK = ".trial.lock"
SUMMARY = "summary"
TRIALS, BEST, IMPORTANCES, IMPORTANCES_PLOT, HISTORY = (
    "trials.csv",
    "best.csv",
    "importances.csv",
    "importances.png",
    "history.png",
)
SUMMARY_FILES = (TRIALS, BEST, IMPORTANCES, IMPORTANCES_PLOT, HISTORY)  # what tune.summary writes
_OWN = re.compile(r"trial-\d{4,}|\.gpu-\d+\.lock|" + re.escape(CLAIM_LOCK) + "|" + SUMMARY)


def _own_summary_file(name: str) -> bool:
    """A summary file, or the temporary of one that a killed worker left (``elasticnet.files.atomic_write``)."""
    return name in SUMMARY_FILES or any(name.startswith(f".{f}.") and name.endswith(".tmp") for f in SUMMARY_FILES)


def check_study_name(name: str) -> str:
    """A study name names the default study folder (``runs/tune/<name>``): a plain, non-empty name."""
    if not name.strip() or "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise UserError(f"--study {name!r}: give a plain name (letters, digits, '-', '_'), e.g. --study unet-lr")
    return name


def check_study_folder(folder: Path) -> Path:
    """Refuse a ``--tune-out`` that is a file, or a folder holding anything a study does not write there."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--tune-out {folder} is a file, not a folder; give a new folder or the study's folder")
    if not folder.is_dir():
        return folder
    foreign = sorted(p.name for p in folder.iterdir() if not _OWN.fullmatch(p.name))
    summary = folder / SUMMARY
    if summary.exists() and not summary.is_dir():
        foreign.append(SUMMARY)
    elif summary.is_dir():
        foreign += [f"{SUMMARY}/{p.name}" for p in sorted(summary.iterdir()) if not _own_summary_file(p.name)]
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(
            f"--tune-out {folder} holds files a study does not write ({shown}); give a new folder, or the "
            "folder of this study"
        )
    return folder
