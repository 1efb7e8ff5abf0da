"""Work on a background thread behind the job interface (``poll``, ``stop``, ``wait``, ``state``, callbacks).

For the steps of a job chain that are neither an engine process nor GUI-thread work: uploading a dataset to a
server, downloading a prediction. ``work(report, cancelled)`` runs on the thread; ``report(done, total, what)``
passes progress to :meth:`ThreadJob.poll`, which never waits; ``cancelled()`` turns True after :meth:`stop`.
What ``work`` returns is kept in :attr:`ThreadJob.result`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from AutoSegNetLib.jobs.followed import InboxJob
from AutoSegNetLib.jobs.state import FAILED, FINISHED, STOPPED

Work = Callable[[Callable[[int, int, str], None], Callable[[], bool]], Any]


class ThreadJob(InboxJob):
    def __init__(self, work: Work, kind: str, label: str = "", meta: dict | None = None) -> None:
        super().__init__()
        self.record = {"kind": kind, "label": label, "meta": meta or {}}
        self.label = label
        self.state.stage = label or kind
        self.result: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=f"job-{kind}", daemon=True)
        self._thread.start()

    def _run(self, work: Work) -> None:
        def report(done: int, total: int, what: str) -> None:
            self.inbox.put(("event", {"event": "progress", "stage": self.label or self.kind, "current": done,
                                       "total": total, "message": what}))

        try:
            self.result = work(report, self._stop.is_set)
            self.inbox.put(("end", (STOPPED if self._stop.is_set() else FINISHED, "")))
        except Exception as exc:  # reported through the state, on the polling thread
            self.inbox.put(("end", (STOPPED if self._stop.is_set() else FAILED, str(exc))))

    def stop(self, grace_s: float = 0.0) -> None:
        self._stop.set()

    def kill(self) -> None:
        self._stop.set()

    def log_tail(self, lines: int = 20) -> str:
        return self.state.message if self.state.status == FAILED else ""
