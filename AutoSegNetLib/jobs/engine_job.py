"""Following one background engine job: progress events, stop, re-attach after a restart.

A job runs ``<python> -m AutoSegNetLib --stop-file <job>/stop <command> ... --progress json`` (``PythonSlicer``
inside Slicer; see :mod:`AutoSegNetLib.jobs.process` for launching and stopping), with stdout going to
``<job>/events.jsonl`` and stderr to ``engine.log``. Files rather than pipes let the engine outlive Slicer:
after a restart :meth:`EngineJob.reattach` reads ``job.json`` (process ID and start time), re-reads the events
(the whole history, e.g. for the loss curves) and follows the process again. :meth:`EngineJob.from_status_file`
follows a training started elsewhere through the ``status.json`` of its fold folder (latest event only).

Nothing here blocks: :meth:`EngineJob.poll` reads what is new and returns at once; the module's timer calls it.
Progress reaches callers through plain Python callbacks, on the thread that calls ``poll``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.jobs import process as proc
from AutoSegNetLib.jobs.followed import FollowedJob
from AutoSegNetLib.jobs.state import FAILED, FINISHED, STOPPED, format_seconds
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
EVENTS_FILE, LOG_FILE = proc.EVENTS_FILE, proc.LOG_FILE


class EngineJob(FollowedJob):
    """One engine process and what it reported."""

    def __init__(self, folder: Path, record: dict, process=None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.record = record
        self.output: list[str] = []  # stdout lines that were not events
        self._process = process  # a subprocess.Popen when this Slicer started it
        self._offset = 0
        self._partial = b""
        self._status_time: float | None = None
        self._stop_deadline: float | None = None
        self._stop_requested = False
        self._tree: list[psutil.Process] = []
        self._killer: proc.TreeKiller | None = None

    # ----- starting and finding jobs -------------------------------------------------------------------
    @classmethod
    def start(cls, args: Sequence[str], jobs_root: Path, kind: str, label: str = "",
              python: str | None = None, status_file: Path | None = None,
              env: dict[str, str] | None = None, meta: dict | None = None, folder: Path | None = None) -> EngineJob:
        """Start ``<python> -m AutoSegNetLib --stop-file <job>/stop *args`` in the background; returns at once.

        ``folder``: an empty job folder made earlier (e.g. by a queue); default: a new one under ``jobs_root``.
        """
        folder = Path(folder) if folder is not None else proc.new_job_folder(Path(jobs_root), kind)
        command = proc.engine_command(args, folder / proc.STOP_FILE, python)
        root = str(proc.engine_root())
        return cls._launch(folder, command, kind, label, status_file, proc.engine_environment(env), root, meta)

    @classmethod
    def start_command(cls, command: Sequence[str], jobs_root: Path, kind: str, label: str = "",
                      env: dict[str, str] | None = None, meta: dict | None = None) -> EngineJob:
        """Start any command line as a job, in its job folder (tests use it for stand-in processes)."""
        folder = proc.new_job_folder(Path(jobs_root), kind)
        return cls._launch(folder, list(map(str, command)), kind, label, None, env, str(folder), meta)

    @classmethod
    def _launch(cls, folder: Path, command: list[str], kind: str, label: str, status_file: Path | None,
                env: dict[str, str] | None, cwd: str, meta: dict | None) -> EngineJob:
        process = proc.launch(command, folder, env, cwd)
        record = {
            "kind": kind, "label": label, "command": command, "pid": process.pid,
            "create_time": proc.create_time(process.pid), "started": time.time(),
            "status_file": str(status_file) if status_file else None, "meta": meta or {},
        }
        write_json(folder / JOB_FILE, record)
        return cls(folder, record, process)

    @classmethod
    def reattach(cls, folder: Path) -> EngineJob:
        """Follow a job started earlier (e.g. before Slicer was restarted) from its folder."""
        record_path = Path(folder) / JOB_FILE
        if not record_path.is_file():
            raise AutoSegNetError(f"{folder} is not a job folder (no {JOB_FILE}).")
        job = cls(Path(folder), json.loads(record_path.read_text()))
        job.poll()
        return job

    @classmethod
    def from_status_file(cls, status_file: Path, pid: int | None = None, stale_after_s: float = 1800.0) -> EngineJob:
        """Follow a training through its ``status.json`` only (e.g. one started from a terminal).

        Without a process ID the job counts as running until the status reports ``done`` or ``error``, or
        until the file has not changed for ``stale_after_s`` seconds (the engine then probably died). Stop
        writes the stop request into the fold folder, which every training watches.
        """
        status_file = Path(status_file)
        record = {"kind": "train", "label": str(status_file.parent), "command": [], "pid": pid,
                  "create_time": proc.create_time(pid) if pid else None, "status_file": str(status_file),
                  "stale_after_s": stale_after_s}
        job = cls(status_file.parent, record)
        job.poll()
        return job

    # ----- following -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.record.get("pid")

    def poll(self) -> list[dict]:
        """Read new events, update :attr:`state`, call the callbacks; returns the new events. Never waits."""
        if self._done:
            return []
        alive = self._alive()  # before reading, so that everything written before an exit is read now
        events = self._read_events() if (self.folder / EVENTS_FILE).is_file() else self._read_status_file()
        self._dispatch(events)
        if self.pid is None and self._process is None:  # status-file job: running until it reports an end
            alive = (self.state.last_event or {}).get("event") not in ("done", "error") and not self._stale()
        if alive and self._stop_requested:
            self._tree = _merge(self._tree, proc.descendants(self._psutil_process()))
            if self._killer is None and self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
                log.warning("Job %s did not stop within the grace period; ending its process tree.", self.folder.name)
                self.kill()
        if self._killer is not None and self._killer.step():
            alive = False
        if not alive:
            self._finish()
        return events

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the engine wrote to stderr."""
        path = self.folder / LOG_FILE
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ----- stopping ---------------------------------------------------------------------------------------
    def stop(self, grace_s: float = 120.0) -> None:
        """Ask the engine to stop cleanly: it finishes the current step, saves ``checkpoint_latest`` and exits.

        The request is a file (signals do not pass through ``PythonSlicer``). If the engine still runs
        ``grace_s`` seconds later, :meth:`poll` ends its whole process tree. Returns at once.
        """
        if self._done:
            return
        proc.request_stop(self.folder)
        self._stop_requested = True
        self._tree = _merge(self._tree, proc.descendants(self._psutil_process()))
        self._stop_deadline = time.monotonic() + grace_s

    def kill(self) -> None:
        """End the engine and every process it started: terminate now, kill survivors on a later poll."""
        if self._done:
            return
        self._stop_requested = True
        process = self._psutil_process()
        tree = _merge([process] if process is not None else [], _merge(proc.descendants(process), self._tree))
        self._killer = proc.TreeKiller(tree)

    # ----- internals -----------------------------------------------------------------------------------
    def _psutil_process(self) -> psutil.Process | None:
        return proc.find_process(self.pid, self.record.get("create_time"))

    def _alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        process = self._psutil_process()
        if process is None:
            return self.pid is None  # a status-file job is judged by its events (see poll)
        return proc.is_alive(process)

    def _stale(self) -> bool:
        path = Path(self.record.get("status_file") or "")
        limit = self.record.get("stale_after_s")
        if limit is None or not path.is_file() or time.time() - path.stat().st_mtime <= limit:
            return False
        self.state.message = f"no progress reported for {format_seconds(limit)}; the training probably stopped"
        return True

    def _read_events(self) -> list[dict]:
        with open(self.folder / EVENTS_FILE, "rb") as stream:
            stream.seek(self._offset)
            data = stream.read()
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        events = []
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except json.JSONDecodeError:
                event = None
            if isinstance(event, dict) and "event" in event:
                events.append(event)
            else:
                self.output.append(text)
        return events

    def _read_status_file(self) -> list[dict]:
        path = self.record.get("status_file")
        if not path or not Path(path).is_file():
            return []
        try:
            event = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError):
            return []  # being replaced right now; read it next time
        if not isinstance(event, dict) or event.get("time") == self._status_time:
            return []
        self._status_time = event.get("time")
        return [event]

    def _finish(self) -> None:
        if self._process is not None:
            self.state.return_code = self._process.poll()
        if (self.folder / EVENTS_FILE).is_file():
            self._dispatch(self._read_events())
        for leftover in self._tree:  # data workers left behind by an engine that exited: end them, no waiting
            if proc.is_alive(leftover):
                leftover.kill()
        self.state.status = self._final_status()
        if self.state.status == FAILED and not self.state.message:
            self.state.message = self.log_tail(5) or f"the engine exited with status {self.state.return_code}"
        log.info("Job %s %s. %s", self.folder.name, self.state.status, self.state.message)
        self._announce_finished()

    def _final_status(self) -> str:
        last = self.state.last_event or {}
        if last.get("event") == "error":
            return FAILED
        if last.get("event") == "done" and last.get("status") == FINISHED:
            return FINISHED  # a stop that came after the end changes nothing
        if self._stop_requested or last.get("status") == STOPPED:
            return STOPPED
        if self.state.return_code is not None:
            return FINISHED if self.state.return_code == 0 else FAILED
        return FINISHED if last.get("event") == "done" else FAILED


def _merge(known: list[psutil.Process], more: list[psutil.Process]) -> list[psutil.Process]:
    """``known`` plus the processes of ``more`` not already in it (by ID)."""
    pids = {p.pid for p in known}
    return [*known, *(p for p in more if p.pid not in pids)]


def find_status_files(results_dataset: Path, recent_s: float = 600.0) -> list[Path]:
    """``fold_*/status.json`` files under a dataset's results whose training has not ended and that changed in
    the last ``recent_s`` seconds: trainings that may still be running (e.g. started from a terminal)."""
    found = []
    for path in sorted(Path(results_dataset).glob("*/fold_*/status.json")):
        try:
            last = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if last.get("event") not in ("done", "error") and time.time() - path.stat().st_mtime <= recent_s:
            found.append(path)
    return found


def find_jobs(jobs_root: Path, running_only: bool = True) -> list[EngineJob]:
    """Jobs recorded under ``jobs_root`` (newest first), re-attached; by default only those still running."""
    jobs = []
    if not Path(jobs_root).is_dir():
        return jobs
    for folder in sorted(Path(jobs_root).iterdir(), reverse=True):
        if (folder / JOB_FILE).is_file():
            try:
                job = EngineJob.reattach(folder)
            except (OSError, json.JSONDecodeError, AutoSegNetError) as exc:
                log.warning("Cannot read job %s: %s", folder, exc)
                continue
            if job.running or not running_only:
                jobs.append(job)
    return jobs
