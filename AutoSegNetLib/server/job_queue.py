"""The server's engine jobs: the same background processes the Slicer module starts, in one GPU queue.

A job is a folder under the client's ``jobs/`` holding ``server.json`` (who asked for what, and when) and, once
started, what :class:`~AutoSegNetLib.jobs.engine_job.EngineJob` writes there (``job.json``, ``events.jsonl``,
``engine.log``). Jobs whose rule takes the GPU (plan/preprocess, train) run one at a time, in the order they
came; other jobs (predict, verify, export) also run one at a time, and beside a GPU job only while
``gpu_room()`` says the GPU has memory to spare. A server restart re-attaches to running jobs and starts the
queued ones; finished jobs keep their files.

Not thread-safe by itself: the application holds :attr:`JobQueue.lock` around every call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.jobs import process as proc
from AutoSegNetLib.jobs.engine_job import JOB_FILE, EngineJob
from AutoSegNetLib.jobs.state import STOPPED
from AutoSegNetLib.server.job_commands import RULES, resolve_arguments
from AutoSegNetLib.server.namespace import Namespace
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)

SERVER_FILE = "server.json"
QUEUED = "queued"


@dataclass
class ServerJob:
    """One client job: queued (``engine`` None) or started."""

    id: str
    namespace: Namespace
    record: dict
    engine: EngineJob | None = None
    cancelled: bool = False

    @property
    def folder(self) -> Path:
        return self.namespace.jobs / self.id

    @property
    def status(self) -> str:
        if self.cancelled:
            return STOPPED
        return QUEUED if self.engine is None else self.engine.state.status

    @property
    def gpu(self) -> bool:
        return RULES[self.record["command"]].gpu

    def describe(self) -> dict:
        state = self.engine.state if self.engine is not None else None
        return {
            "id": self.id, "command": self.record["command"], "args": self.record["args"],
            "kind": self.record.get("kind"), "label": self.record.get("label", ""),
            "meta": self.record.get("meta", {}), "status": self.status, "queued_at": self.record["queued_at"],
            "stage": state.stage if state else "", "message": state.message if state else "",
            "fraction": state.fraction if state else None, "epoch": state.epoch if state else None,
            "epochs": state.epochs if state else None, "return_code": state.return_code if state else None,
        }


class JobQueue:
    """Every client's jobs; :meth:`tick` (called every ``poll_interval_s``) follows them and starts queued ones."""

    def __init__(self, python: str | None = None, gpu_room: Callable[[], bool] = lambda: True) -> None:
        self.python = python
        self.gpu_room = gpu_room  # may a job start beside a running GPU job?
        self.jobs: dict[tuple[str, str], ServerJob] = {}
        self.lock = threading.RLock()

    def submit(self, namespace: Namespace, command: str, args: Sequence[str], kind: str = "",
               label: str = "", meta: dict | None = None) -> ServerJob:
        """Queue ``autosegnet <command> <args>`` for a client (paths relative to its workspace)."""
        argv = resolve_arguments(namespace, command, args)
        folder = proc.new_job_folder(namespace.jobs, kind or command)
        record = {"command": command, "args": list(map(str, args)), "argv": [command, *argv],
                  "kind": kind or command, "label": label, "meta": meta or {}, "client": namespace.name,
                  "queued_at": time.time()}
        write_json(folder / SERVER_FILE, record)
        job = ServerJob(folder.name, namespace, record)
        self.jobs[(namespace.name, job.id)] = job
        self.tick()
        return job

    def get(self, namespace: Namespace, job_id: str) -> ServerJob:
        job = self.jobs.get((namespace.name, job_id))
        if job is None:
            raise KeyError(job_id)
        return job

    def of(self, namespace: Namespace) -> list[ServerJob]:
        return sorted((j for (c, _), j in self.jobs.items() if c == namespace.name), key=lambda j: j.id)

    def stop(self, job: ServerJob, grace_s: float = 120.0) -> None:
        """The clean stop the module uses (a stop file; the process tree ends after ``grace_s``); a queued job is
        cancelled."""
        if job.engine is None:
            job.cancelled = True
            write_json(job.folder / SERVER_FILE, {**job.record, "cancelled": True})
        elif job.engine.running:
            job.engine.stop(grace_s)

    def tick(self) -> None:
        """Follow running jobs (never waits), then start what may start."""
        for job in self.jobs.values():
            if job.engine is not None and job.engine.running:
                try:
                    job.engine.poll()
                except Exception:  # one broken job must not stop the queue
                    log.exception("Error while following job %s", job.id)
        for job in self._startable():
            self._start(job)

    def counts(self) -> dict[str, int]:
        statuses = [j.status for j in self.jobs.values()]
        return {"queued": statuses.count(QUEUED), "running": statuses.count("running")}

    def reattach(self, namespaces: Sequence[Namespace]) -> int:
        """After a server restart: follow the jobs found in the clients' ``jobs/`` folders; returns their number."""
        found = 0
        for namespace in namespaces:
            for folder in sorted(namespace.jobs.glob(f"*/{SERVER_FILE}")):
                try:
                    record = read_json(folder)
                    started = (folder.parent / JOB_FILE).is_file()
                    engine = EngineJob.reattach(folder.parent) if started else None
                except (OSError, ValueError, AutoSegNetError) as exc:
                    log.warning("Cannot re-attach job %s: %s", folder.parent, exc)
                    continue
                job = ServerJob(folder.parent.name, namespace, record, engine, bool(record.get("cancelled")))
                self.jobs[(namespace.name, job.id)] = job
                found += 1
        self.tick()
        return found

    def _startable(self) -> list[ServerJob]:
        running = [j for j in self.jobs.values() if j.status == "running"]
        gpu_busy = any(j.gpu for j in running)
        other_busy = any(not j.gpu for j in running)
        startable = []
        for job in sorted((j for j in self.jobs.values() if j.status == QUEUED), key=lambda j: j.record["queued_at"]):
            if job.gpu and not gpu_busy:
                startable.append(job)
                gpu_busy = True
            elif not job.gpu and not other_busy and (not gpu_busy or self.gpu_room()):
                startable.append(job)
                other_busy = True
        return startable

    def _start(self, job: ServerJob) -> None:
        argv = job.record["argv"]
        job.engine = EngineJob.start(argv + ["--workspace", str(job.namespace.root), "--progress", "json"],
                                     job.namespace.jobs, job.record["kind"], job.record.get("label", ""),
                                     self.python, meta=job.record.get("meta"), folder=job.folder)
        log.info("Started job %s of %s: autosegnet %s", job.id, job.namespace.name, " ".join(argv))
