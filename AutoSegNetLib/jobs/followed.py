"""What every kind of job shares: its state, callbacks, ``wait`` and ``detach``.

:class:`FollowedJob` is the base of :class:`~AutoSegNetLib.jobs.engine_job.EngineJob` (a process here),
:class:`InboxJob` -- jobs whose news come from a thread through a queue: :class:`~AutoSegNetLib.jobs.thread_job.
ThreadJob` (work in this process) and :class:`~AutoSegNetLib.remote.remote_job.RemoteJob` (a job on a server).
Subclasses set ``record`` (``kind``, ``meta``) and implement ``poll``; ``poll`` never waits.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from AutoSegNetLib.jobs.state import FAILED, FINISHED, STOPPED, JobState


class FollowedJob:
    record: dict

    def __init__(self) -> None:
        self.state = JobState()
        self.on_event: list[Callable[[dict], None]] = []
        self.on_finished: list[Callable[[FollowedJob], None]] = []
        self._done = False

    @property
    def kind(self) -> str:
        return self.record.get("kind", "")

    @property
    def meta(self) -> dict:
        return self.record.get("meta") or {}

    @property
    def running(self) -> bool:
        return not self._done

    def poll(self) -> list[dict]:
        raise NotImplementedError

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobState:
        """Poll until the job ends (or ``timeout`` seconds pass); for scripts and tests, never the GUI thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} job still running after {timeout} s.")
            if self.running:
                time.sleep(interval)
        return self.state

    def detach(self) -> None:
        """Stop following: callbacks are dropped, the work goes on (e.g. the scene was closed)."""
        self.on_event.clear()
        self.on_finished.clear()

    def _dispatch(self, events: list[dict]) -> None:
        for event in events:
            self.state.update(event)
            for callback in list(self.on_event):
                callback(event)

    def _announce_finished(self) -> None:
        self._done = True
        for callback in list(self.on_finished):
            callback(self)


class InboxJob(FollowedJob):
    """A job whose thread puts ``("event", dict)`` and finally ``("end", (status, message))`` into
    :attr:`inbox`; :meth:`poll` takes them on the polling thread."""

    def __init__(self) -> None:
        super().__init__()
        self.inbox: queue.Queue = queue.Queue()

    def poll(self) -> list[dict]:
        events = []
        while not self._done:
            try:
                kind, payload = self.inbox.get_nowait()
            except queue.Empty:
                break
            if kind == "event":
                events.append(payload)
                self._dispatch([payload])
            else:
                status, message = payload
                self.state.status = status if status in (FINISHED, FAILED, STOPPED) else FAILED
                self.state.message = message or self.state.message
                self.state.return_code = 1 if self.state.status == FAILED else 0
                self._announce_finished()
        return events
