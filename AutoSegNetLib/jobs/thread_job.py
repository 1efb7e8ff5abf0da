"""Work on a background thread behind the job interface (``poll``, ``stop``, ``wait``, ``state``, callbacks).

For the steps of a job chain that are neither an engine process nor GUI-thread work: uploading a dataset to a
server, downloading a prediction. ``work(report, cancelled)`` runs on the thread; ``report(done, total, what)``
passes progress to :meth:`ThreadJob.poll`, which never waits; ``cancelled()`` turns True after :meth:`stop`.
What ``work`` returns is kept in :attr:`ThreadJob.result`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from AutoSegNetLib.jobs.state import FAILED, FINISHED, STOPPED, JobState

Work = Callable[[Callable[[int, int, str], None], Callable[[], bool]], Any]


class ThreadJob:
    def __init__(self, work: Work, kind: str, label: str = "", meta: dict | None = None) -> None:
        self.kind, self.label, self.meta = kind, label, meta or {}
        self.state = JobState(stage=label or kind)
        self.on_event: list[Callable[[dict], None]] = []
        self.on_finished: list[Callable[[ThreadJob], None]] = []
        self.result: Any = None
        self._inbox: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"job-{kind}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return not self._done

    def _run(self, work: Work) -> None:
        def report(done: int, total: int, what: str) -> None:
            self._inbox.put(("event", {"event": "progress", "stage": self.label or self.kind, "current": done,
                                       "total": total, "message": what}))

        try:
            self.result = work(report, self._stop.is_set)
            self._inbox.put(("end", (STOPPED if self._stop.is_set() else FINISHED, "")))
        except Exception as exc:  # reported through the state, on the polling thread
            self._inbox.put(("end", (STOPPED if self._stop.is_set() else FAILED, str(exc))))

    def poll(self) -> list[dict]:
        events = []
        while not self._done:
            try:
                kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                events.append(payload)
                self.state.update(payload)
                for callback in list(self.on_event):
                    callback(payload)
            else:
                self.state.status, message = payload
                self.state.message = message or self.state.message
                self.state.return_code = 0 if self.state.status != FAILED else 1
                self._done = True
                for callback in list(self.on_finished):
                    callback(self)
        return events

    def stop(self, grace_s: float = 0.0) -> None:
        self._stop.set()

    def kill(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} still running after {timeout} s.")
            if self.running:
                time.sleep(interval)
        return self.state

    def log_tail(self, lines: int = 20) -> str:
        return self.state.message if self.state.status == FAILED else ""

    def detach(self) -> None:
        self.on_event.clear()
        self.on_finished.clear()
