"""Engine commands run one after the other as one job (e.g. export, plan-and-preprocess, then train)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoSegNetLib.jobs.engine_job import EngineJob
from AutoSegNetLib.jobs.state import FAILED, FINISHED, RUNNING, JobState


@dataclass
class JobStep:
    """One step of a :class:`JobChain`: an engine command (``args``, or a function called when the step starts
    that returns them), or an in-process job made by ``start`` (e.g. staging an export on the GUI thread).
    ``after(job)`` runs when the step has finished successfully, before the next one starts. ``local``: an
    engine command that runs on this computer even when the chain's launcher sends commands to a server
    (writing the exported raw dataset that is then uploaded)."""

    name: str
    args: Sequence[str] | Callable[[], Sequence[str]] = ()
    status_file: Path | None = None
    start: Callable[[], Any] | None = None
    after: Callable[[Any], None] | None = None
    local: bool = False


class JobChain:
    """Engine commands run one after the other (e.g. plan-and-preprocess, then train); stops at a failure.

    Same interface as :class:`EngineJob`: ``poll``, ``stop``, ``kill``, ``wait``, ``running``, ``state``,
    ``on_event``, ``on_finished``.
    """

    def __init__(self, steps: Sequence[JobStep], jobs_root: Path, kind: str, label: str = "",
                 python: str | None = None, meta: dict | None = None,
                 launcher: Callable[..., EngineJob] | None = None) -> None:
        self.steps = list(steps)
        self.jobs_root, self.kind, self.label, self.python = Path(jobs_root), kind, label, python
        self.meta = meta or {}
        self.launcher = launcher or EngineJob.start  # tests inject a stand-in process here
        self.state = JobState()
        self.on_event: list[Callable[[dict], None]] = []
        self.on_finished: list[Callable[[JobChain], None]] = []
        self.current: EngineJob | None = None
        self.index = -1
        self._stopped = False

    @property
    def running(self) -> bool:
        return self.current is not None and self.state.status == RUNNING

    def start(self) -> JobChain:
        self._start_next()
        return self

    def _start_next(self) -> None:
        self.index += 1
        step = self.steps[self.index]
        self.state.stage = f"{step.name} ({self.index + 1}/{len(self.steps)})"
        if step.start is not None:
            self.current = step.start()
        else:
            args = step.args() if callable(step.args) else step.args
            launcher = EngineJob.start if step.local else self.launcher
            self.current = launcher(args, self.jobs_root, self.kind, self.label or step.name, self.python,
                                         step.status_file, meta={**self.meta, "step": step.name})
        self.current.on_event.append(self._forward)

    def _forward(self, event: dict) -> None:
        stage = self.state.stage
        self.state.update(event)
        self.state.stage = stage if event.get("event") != "stage" else f"{stage}: {self.state.stage}"
        for callback in list(self.on_event):
            callback(event)

    def poll(self) -> list[dict]:
        if self.current is None or self.state.status != RUNNING:
            return []
        events = self.current.poll()
        if not self.current.running:
            status = self.current.state.status
            if status == FINISHED and not self._stopped and self.index < len(self.steps) - 1:
                try:
                    self._after_step()
                    self._start_next()
                except Exception as exc:  # e.g. the next step's arguments cannot be built
                    self._end(FAILED, f"{self.steps[self.index].name}: {exc}")
            else:
                try:
                    if status == FINISHED:
                        self._after_step()
                except Exception as exc:
                    status, self.current.state.message = FAILED, f"{self.steps[self.index].name}: {exc}"
                self._end(status, self.current.state.message)
        return events

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the current step's engine wrote to stderr."""
        return self.current.log_tail(lines) if self.current is not None else ""

    @property
    def in_process(self) -> bool:
        """True while the current step works inside this process (on the polling thread)."""
        return self.running and self.steps[self.index].start is not None

    def _after_step(self) -> None:
        after = self.steps[self.index].after
        if after is not None:
            after(self.current)

    def _end(self, status: str, message: str) -> None:
        self.state.status, self.state.message = status, message
        self.state.return_code = self.current.state.return_code if self.current else None
        for callback in list(self.on_finished):
            callback(self)

    def stop(self, grace_s: float = 60.0) -> None:
        self._stopped = True
        if self.current is not None:
            self.current.stop(grace_s)

    def kill(self) -> None:
        """End the current step's process tree now (without waiting; :meth:`poll` follows it to the end)."""
        self._stopped = True
        if self.current is not None:
            self.current.kill()

    def detach(self) -> None:
        """Stop following: callbacks are dropped, the engine keeps running (e.g. the scene was closed)."""
        self.on_event.clear()
        self.on_finished.clear()
        if self.current is not None:
            self.current.detach()

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state.status == RUNNING:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} still running after {timeout} s.")
            if self.state.status == RUNNING:
                time.sleep(interval)
        return self.state
