"""Safe file writing and reading: nothing half-written, nothing executed.

Every artefact is written to a temporary name in the same folder, flushed to disk, then renamed over the
target, so a crash leaves either the old file or the new one, never a torn one. Checkpoints are read with
``torch.load(weights_only=True)``, which refuses pickled code. :func:`exclusive_lock` guards files and
folders that several processes may write (a run folder, a study's claim). (torch is imported only by the functions
that need it: a site running exported models has no torch.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from elasticnet.errors import UserError


def umask() -> int:
    """The process's file-creation mask (read without changing it for longer than a moment)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def respect_umask(path: Path, directory: bool = False) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (always 0600/0700) the permissions a plain ``open`` would:
    a bundle exported by one account must be readable by a site's service account when the umask says so."""
    os.chmod(path, (0o777 if directory else 0o666) & ~umask())


def within(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both resolved: links and ``..`` followed)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def nested(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` is, contains or lies inside ``b``."""
    return within(a, b) or within(b, a)


def check_outside_data(folder: str | Path, data: str, what: str = "--out", flag: str = "--out") -> None:
    """Refuse an output ``folder`` that is, or lies inside, the data set folder ``data`` (``synthetic``: none):
    what a command writes there (a run's ``curve.png``, a profile's plot) would join the data set, and the next
    listing of it would read those files as images."""
    if data != "synthetic" and Path(data).exists() and within(folder, data):
        raise UserError(
            f"{what} {folder} is, or lies inside, the data folder {data}: the files written there would land "
            f"among the data; choose a {flag} outside the data"
        )


def prepare_outputs(folder: str | Path, names: list[str], overwrite: bool = False, flag: str = "--out") -> Path:
    """Check, before long work starts and without creating anything, that ``folder`` can take the files
    ``names``: it is a folder this process can write (or can be made in the nearest existing one), and none of
    the files exists unless ``overwrite``. Returns the folder."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file, not a folder; give a folder")
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {folder} lies inside the file {existing}; give a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"cannot write to {existing} (permission denied); give {flag} a folder you can write")
    present = [folder / n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
    if present and not overwrite:
        raise UserError(
            f"{present[0]} exists already; choose another {flag}, or pass --overwrite to replace "
            f"{'it' if len(present) == 1 else 'them'}"
        )
    return folder


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename ``tmp_path`` to ``path`` (permissions as the umask says)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        respect_umask(tmp_path)
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def save_torch(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda p: torch.save(obj, p))


def load_torch(path: str | Path, kind: str = "checkpoint") -> dict[str, Any]:
    """Load a file written by :func:`save_torch` (tensors and plain data only) onto the CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{kind} {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign, or a pickle that wants to run code
        import pickle

        text = str(e)
        # never repeat PyTorch's advice to switch the weights-only check off: that is how such a file runs code
        if "Unsupported global" in text:
            raise UserError(
                f"{path} holds objects other than tensors and plain data, so it may be malicious; it was "
                f"not loaded. An elasticnet {kind} never holds such objects: use a file you trust"
            ) from None
        if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
            raise UserError(
                f"{path} is not a readable elasticnet {kind} (not a PyTorch file of tensors and plain "
                "data: damaged, or a file of another kind); it was not loaded"
            ) from None
        raise UserError(f"{path} is not a readable elasticnet {kind} ({type(e).__name__}: {text[:200]})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} is not an elasticnet {kind}")
    return obj


@contextmanager
def exclusive_lock(path: str | Path, wait: bool = True) -> Iterator[int | None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) and yield its file descriptor; with
    ``wait=False`` yield None at once when another process holds it. The kernel releases the lock however
    the holder ends (SIGKILL included). POSIX only."""
    import fcntl
    import stat

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # never follow a link: a planted RUN/.lock -> ~/thesis.tex must not be opened (and then truncated)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise UserError(
            f"cannot open the lock file {path} ({e.strerror}); if it is a symbolic link or not a file, remove it"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise UserError(
            f"the lock file {path} is not a plain file of its own (a hard link or a special file); remove it"
        )
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)  # releases the lock


def lock_is_held(path: str | Path) -> bool:
    """True if some process holds the :func:`exclusive_lock` on ``path``."""
    if not Path(path).exists():
        return False
    with exclusive_lock(path, wait=False) as fd:
        return fd is None
