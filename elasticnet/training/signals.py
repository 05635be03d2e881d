"""Stopping a training cleanly on SIGINT (Ctrl-C) or SIGTERM (a cluster's time limit, ``kill``).

The first signal only sets a flag; the training loop checks it after every step, writes its state and
raises :class:`TrainingInterrupted`, which the command line turns into a one-line message and exit status
128 + signal number. A second signal interrupts at once (the state of the last checkpoint survives, as
after a SIGKILL), and so does the first once :attr:`StopRequest.immediate` is set (the final evaluation,
when the training state is already on disk).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving its state; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """Context manager: while active, SIGINT/SIGTERM set :attr:`signum` instead of killing the process."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.immediate = False
        self._previous: dict[int, object] = {}

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        self.signum = signum
        if not first or self.immediate:
            raise TrainingInterrupted(
                f"stopped at once by {signal.Signals(signum).name}; the last saved training state is kept", signum
            )

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
