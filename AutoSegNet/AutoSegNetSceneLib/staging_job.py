"""The GUI-thread half of an export as a job: a :class:`~AutoSegNetSceneLib.staging.StagedExport` stepped from
``poll`` for at most :data:`POLL_BUDGET_S` per call, so it can be the first step of a
:class:`~AutoSegNetSceneLib.job_chain.JobChain` (stage, then ``import-staged``, then verify / preprocess / train).

Staging must touch MRML, so it runs in Slicer's process, on the thread that polls; each step is tens of
milliseconds (see ``Testing/benchmarks/bench_gui_thread.py``), and a poll stops stepping once its budget is used.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from AutoSegNetLib.jobs.followed import FollowedJob
from AutoSegNetLib.jobs.state import FAILED, FINISHED, STOPPED, JobState
from AutoSegNetSceneLib.staging import StagedExport, StagingResult

log = logging.getLogger(__name__)

POLL_BUDGET_S = 0.05


class StagingJob(FollowedJob):
    """Same interface as :class:`~AutoSegNetLib.jobs.engine_job.EngineJob` (``poll``, ``stop``, ``kill``, ``wait``,
    ``running``, ``state``, ``on_event``, ``on_finished``); the work happens inside :meth:`poll`."""

    pid = None

    def __init__(self, export: StagedExport, budget_s: float = POLL_BUDGET_S) -> None:
        super().__init__()
        self.record = {"kind": "stage", "meta": {}}
        self.export = export
        self.budget_s = budget_s
        self.folder = Path(export.folder)
        self.state.stage = "stage"

    @property
    def result(self) -> StagingResult | None:
        return self.export.result

    def poll(self) -> list[dict]:
        """Step the staging until it is done or :attr:`budget_s` is used; returns the progress event sent."""
        if not self.running:
            return []
        deadline = time.perf_counter() + self.budget_s
        try:
            while self.export.step():
                if time.perf_counter() >= deadline:
                    break
        except Exception as exc:  # a bad case: the chain reports it like an engine failure
            log.warning("Staging the training set failed: %s", exc)
            self._end(FAILED, str(exc))
            return []
        event = {"event": "stage", "stage": "stage", "message": self.export.message,
                 "fraction": self.export.fraction}
        self._dispatch([event])
        if self.export.result is not None:
            self._end(FINISHED, self.export.result.summary())
        return [event]

    def wait(self, timeout: float | None = None, interval: float = 0.0) -> JobState:
        """Stage everything now (scripts and tests): no pause between polls."""
        return super().wait(timeout, interval)

    def stop(self, grace_s: float = 0.0) -> None:
        if self.running:
            self._end(STOPPED, "stopped before the export was complete")

    kill = stop

    def log_tail(self, lines: int = 20) -> str:
        return self.state.message

    def _end(self, status: str, message: str) -> None:
        self.state.status, self.state.message, self.state.return_code = status, message, 0
        self._announce_finished()
