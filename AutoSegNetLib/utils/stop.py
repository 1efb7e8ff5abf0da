"""Clean stops: a request that long-running stages check between units of work (a step, a case, a file).

A stop is requested in one of three ways:

- :func:`stop_on_signals` turns SIGINT / SIGTERM into a request (a second SIGINT while one is pending raises
  ``KeyboardInterrupt``, the impatient way out);
- a **stop file** (``autosegnet --stop-file PATH ...``): the request counts as made once ``PATH`` exists. This is
  the way to stop the engine when signals cannot reach it, e.g. under 3D Slicer's ``PythonSlicer`` launcher,
  which starts ``python-real`` as a child and does not forward signals;
- :meth:`StopRequest.request` from code.

Checking :attr:`StopRequest.requested` stats the stop file at most every ``min_interval_s`` (0.5 s by default):
training checks after every step, which on a tiny network or a fast GPU is a few milliseconds, and a stat on a
network file system can cost a round trip; half a second keeps that negligible while a stop is still seen well
within one second plus the current unit of work. Once seen, a request stays made (deleting the file does not
cancel it). The file is only read, never created or deleted: the caller owns it and should remove a stale one
before starting a new command with the same path.

Stages that have partial results worth keeping (training, predict, verify, preprocess) check ``requested``
between units and report what they did; stages with nothing worth keeping call :meth:`StopRequest.raise_if_requested`
and the CLI turns the :class:`StopRequested` exception into a ``done`` event with ``status="stopped"``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

#: Default seconds between two looks at the stop file.
STOP_FILE_INTERVAL_S = 0.5
#: The stop file's name in a job folder (3D Slicer's jobs) and in a training's fold folder, which every training
#: watches too, so that one found only through its ``status.json`` (started from a terminal) can be stopped.
STOP_FILE_NAME = "stop"


class StopRequested(Exception):  # noqa: N818 - a request, not an error: the CLI exits 0
    """Raised where a stage abandons its work because a stop was requested (nothing half-done is left)."""


class StopRequest:
    """A flag stages check between units of work; optionally also set by the existence of ``stop_file``.

    ``clock`` (seconds, monotonic) is injectable for tests. Picklable, so it travels to DDP processes, each of
    which then watches the file itself.
    """

    def __init__(self, stop_file: str | os.PathLike | None = None, min_interval_s: float = STOP_FILE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.reason: str | None = None
        self.stop_file = Path(stop_file) if stop_file is not None else None
        self.watched = [self.stop_file] if self.stop_file is not None else []
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._next_look: float | None = None

    @property
    def requested(self) -> bool:
        """True once a stop was requested (signal, code, or the stop file seen to exist)."""
        if self.reason is None and self.watched:
            self._look_at_stop_file()
        return self.reason is not None

    def request(self, reason: str = "requested") -> None:
        self.reason = reason

    def watch(self, stop_file: str | os.PathLike) -> None:
        """Also stop once ``stop_file`` exists (e.g. the fold folder's ``stop``)."""
        self.watched.append(Path(stop_file))

    def raise_if_requested(self, what: str) -> None:
        """Raise :class:`StopRequested` (naming ``what`` was abandoned) when a stop was requested."""
        if self.requested:
            raise StopRequested(f"stop requested ({self.reason}): {what}")

    def _look_at_stop_file(self) -> None:
        now = self.clock()
        if self._next_look is not None and now < self._next_look:
            return
        self._next_look = now + self.min_interval_s
        for path in self.watched:
            if os.path.exists(path):
                log.warning("Stop file %s exists: stopping cleanly.", path)
                self.request(f"stop file {path}")
                return


def is_stopped(stop: StopRequest | None) -> bool:
    """``stop.requested`` for an optional request (None = never stopped)."""
    return stop is not None and stop.requested


@contextlib.contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """Turn SIGINT / SIGTERM into ``stop.request`` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("%s received: stopping after the current step and saving checkpoint_latest.", name)
        stop.request(name)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
