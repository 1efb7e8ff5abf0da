"""Background engine processes: start, follow progress events, stop, kill the whole tree, re-attach.

A job runs ``<python> -m AutoSegNetLib <command> ... --progress json`` (``PythonSlicer`` inside Slicer) in its
own process group, with stdout going to ``<job dir>/events.jsonl`` and stderr to ``engine.log``. Writing to files
rather than pipes lets the engine outlive Slicer: after a restart :meth:`EngineJob.reattach` reads ``job.json``
(process ID and start time), re-reads the events (the whole history, e.g. for the loss curves) and follows
the process again. :meth:`EngineJob.from_status_file` follows a training started elsewhere through the
``status.json`` its fold folder holds (latest event only).

Nothing here blocks: :meth:`EngineJob.poll` reads what is new and returns at once; the module's widget calls
it from a QTimer. Progress reaches callers through plain Python callbacks (PythonQt cannot define signals
reliably), always on the thread that calls ``poll``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)

JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
LOG_FILE = "engine.log"
RUNNING, FINISHED, FAILED, STOPPED = "running", "finished", "failed", "stopped"


def engine_python() -> str:
    """Slicer's ``PythonSlicer`` when there is one on the PATH, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_root() -> Path:
    """The folder that contains the ``AutoSegNetLib`` package (put on the child's ``PYTHONPATH``)."""
    import AutoSegNetLib

    return Path(AutoSegNetLib.__file__).resolve().parent.parent


@dataclass
class JobState:
    """What is known about a job, updated from its events."""

    status: str = RUNNING
    stage: str = ""
    message: str = ""
    fraction: float | None = None
    epoch: int | None = None
    epochs: int | None = None
    eta_s: float | None = None
    train_loss: float | None = None
    pseudo_dice: Any = None  # per class: {label name: Dice} (or a list)
    return_code: int | None = None
    last_event: dict | None = None
    history: list[dict] = field(default_factory=list)  # the "epoch" events, for curves

    def update(self, event: dict) -> None:
        self.last_event = event
        kind = event.get("event")
        if kind == "stage" or "stage" in event:
            self.stage = str(event.get("stage") or event.get("name") or self.stage)
        if event.get("message"):
            self.message = str(event["message"])
        for key in ("epoch", "epochs", "eta_s", "train_loss", "pseudo_dice"):
            if key in event:
                setattr(self, key, event[key])
        if kind == "epoch":
            self.history.append(event)
        fraction = progress_fraction(event)
        if fraction is not None:
            self.fraction = fraction

    def describe(self) -> str:
        """One line for the GUI: stage, epoch, ETA, loss, pseudo-Dice."""
        parts = [self.status if self.status != RUNNING else (self.stage or "running")]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}" + (f"/{self.epochs}" if self.epochs else ""))
        if self.eta_s:
            parts.append(f"ETA {format_seconds(self.eta_s)}")
        if isinstance(self.train_loss, (int, float)):
            parts.append(f"loss {self.train_loss:.4f}")
        dice = mean_dice(self.pseudo_dice)
        if dice is not None:
            parts.append(f"pseudo-Dice {dice:.3f}")
        if self.message and self.status != RUNNING:
            parts.append(self.message)
        return " · ".join(parts)


def progress_fraction(event: dict) -> float | None:
    """Fraction done (0..1) that an event implies, if any."""
    if isinstance(event.get("fraction"), (int, float)):
        return max(0.0, min(1.0, float(event["fraction"])))
    if event.get("event") == "done":
        return 1.0
    if event.get("event") == "iteration" and all(isinstance(event.get(k), (int, float)) and event[k] > 0
                                                  for k in ("epoch", "epochs", "iterations")):
        done = event["epoch"] - 1 + event.get("iteration", 0) / event["iterations"]  # "epoch" is the running one
        return max(0.0, min(1.0, done / event["epochs"]))
    for done_key, total_key in (("epoch", "epochs"), ("iteration", "iterations"), ("index", "total"),
                                ("current", "total"), ("case_index", "num_cases")):
        done, total = event.get(done_key), event.get(total_key)
        if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
            return max(0.0, min(1.0, float(done) / float(total)))
    return None


def mean_dice(dice: Any) -> float | None:
    """Mean of per-class pseudo-Dice given as a list or a ``{label: dice}`` dict (NaN entries skipped)."""
    values = list(dice.values()) if isinstance(dice, dict) else dice
    if isinstance(values, list):
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and v == v]
        return sum(numbers) / len(numbers) if numbers else None
    return float(values) if isinstance(values, (int, float)) else None


def format_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class EngineJob:
    """One engine process and what it reported."""

    def __init__(self, folder: Path, record: dict, process: subprocess.Popen | None = None) -> None:
        self.folder = Path(folder)
        self.record = record
        self.state = JobState()
        self.on_event: list[Callable[[dict], None]] = []
        self.on_finished: list[Callable[[EngineJob], None]] = []
        self.output: list[str] = []  # stdout lines that were not events
        self._process = process
        self._offset = 0
        self._partial = b""
        self._status_time: float | None = None
        self._stop_deadline: float | None = None
        self._stop_requested = False
        self._tree: list[psutil.Process] = []
        self._done = False

    # ----- starting and finding jobs -------------------------------------------------------------------
    @classmethod
    def start(cls, args: Sequence[str], jobs_root: Path, kind: str, label: str = "",
              python: str | None = None, status_file: Path | None = None,
              env: dict[str, str] | None = None, meta: dict | None = None) -> EngineJob:
        """Start ``<python> -m AutoSegNetLib *args`` in the background; returns at once."""
        folder = _new_job_folder(Path(jobs_root), kind)
        command = [python or engine_python(), "-m", "AutoSegNetLib", *map(str, args)]
        child_env = dict(os.environ if env is None else env)
        root = str(engine_root())
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH", "")) if p)
        child_env["PYTHONUNBUFFERED"] = "1"
        return cls._launch(folder, command, kind, label, status_file, child_env, cwd=root, meta=meta)

    @classmethod
    def start_command(cls, command: Sequence[str], jobs_root: Path, kind: str, label: str = "",
                      env: dict[str, str] | None = None, meta: dict | None = None) -> EngineJob:
        """Start any command line as a job (tests use it for stand-in processes)."""
        folder = _new_job_folder(Path(jobs_root), kind)
        return cls._launch(folder, list(map(str, command)), kind, label, None, env, cwd=str(folder), meta=meta)

    @classmethod
    def _launch(cls, folder: Path, command: list[str], kind: str, label: str, status_file: Path | None,
                env: dict[str, str] | None, cwd: str, meta: dict | None = None) -> EngineJob:
        log.info("Starting %s job: %s", kind, " ".join(command))
        with open(folder / EVENTS_FILE, "wb") as stdout, open(folder / LOG_FILE, "wb") as stderr:
            process = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env,
                                       cwd=cwd, **_detached_process_options())
        record = {
            "kind": kind, "label": label, "command": command, "pid": process.pid,
            "create_time": _create_time(process.pid), "started": time.time(),
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
        until the file has not changed for ``stale_after_s`` seconds (the engine then probably died).
        """
        status_file = Path(status_file)
        record = {"kind": "train", "label": str(status_file.parent), "command": [], "pid": pid,
                  "create_time": _create_time(pid) if pid else None, "status_file": str(status_file),
                  "stale_after_s": stale_after_s}
        job = cls(status_file.parent, record)
        job.poll()
        return job

    # ----- following -------------------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.record.get("kind", "")

    @property
    def meta(self) -> dict:
        return self.record.get("meta") or {}

    @property
    def pid(self) -> int | None:
        return self.record.get("pid")

    @property
    def running(self) -> bool:
        return not self._done

    def poll(self) -> list[dict]:
        """Read new events, update :attr:`state`, call the callbacks; returns the new events."""
        if self._done:
            return []
        alive = self._alive()  # before reading, so that everything written before an exit is read now
        events = self._read_events() if (self.folder / EVENTS_FILE).is_file() else self._read_status_file()
        self._dispatch(events)
        if self.pid is None and self._process is None:  # status-file job: running until it reports an end
            alive = (self.state.last_event or {}).get("event") not in ("done", "error") and not self._stale()
        if alive and self._stop_deadline is not None and time.monotonic() > self._stop_deadline:
            log.warning("Job %s did not stop within the grace period; killing its process tree.", self.folder.name)
            self.kill()
            alive = False
        if not alive:
            self._finish()
        return events

    def _dispatch(self, events: list[dict]) -> None:
        for event in events:
            self.state.update(event)
            for callback in list(self.on_event):
                callback(event)

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobState:
        """Poll until the job ends (or ``timeout`` seconds pass); returns the state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Job {self.folder.name} still running after {timeout} s.")
            if self.running:
                time.sleep(interval)
        return self.state

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the engine wrote to stderr."""
        path = self.folder / LOG_FILE
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # ----- stopping ---------------------------------------------------------------------------------------
    def stop(self, grace_s: float = 60.0) -> None:
        """Ask the engine to stop cleanly (SIGINT / CTRL_BREAK: it saves a checkpoint and exits).

        If it is still running ``grace_s`` seconds later, :meth:`poll` kills the whole process tree.
        """
        process = self._psutil_process()
        if process is None:
            return
        self._stop_requested = True
        self._tree = _descendants(process)
        sig = signal.CTRL_BREAK_EVENT if sys.platform == "win32" else signal.SIGINT
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)
        self._stop_deadline = time.monotonic() + grace_s

    def kill(self) -> None:
        """End the engine and every process it started, now."""
        self._stop_requested = True
        process = self._psutil_process()
        kill_process_tree(process, extra=self._tree)
        if self._process is not None:
            self._process.wait()

    # ----- internals -----------------------------------------------------------------------------------
    def _psutil_process(self) -> psutil.Process | None:
        if self.pid is None:
            return None
        try:
            process = psutil.Process(self.pid)
        except psutil.Error:
            return None
        created = self.record.get("create_time")
        if created is not None and abs(process.create_time() - created) > 1.0:
            return None  # the ID was reused by another process
        return process

    def _alive(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        process = self._psutil_process()
        if process is None:
            return self.pid is None  # a status-file job is judged by its events (see poll)
        try:
            return process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

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
        kill_process_tree(None, extra=self._tree)  # workers left behind after a clean stop
        self.state.status = self._final_status()
        if self.state.status == FAILED and not self.state.message:
            self.state.message = self.log_tail(5) or f"the engine exited with status {self.state.return_code}"
        self._done = True
        log.info("Job %s %s. %s", self.folder.name, self.state.status, self.state.message)
        for callback in list(self.on_finished):
            callback(self)

    def _final_status(self) -> str:
        last = (self.state.last_event or {}).get("event")
        if last == "error":
            return FAILED
        if self._stop_requested:
            return STOPPED
        if self.state.return_code is not None:
            return FINISHED if self.state.return_code == 0 else FAILED
        return FINISHED if last == "done" else FAILED


@dataclass
class JobStep:
    """One engine command of a :class:`JobChain`; ``args`` may be a function called when the step starts."""

    name: str
    args: Sequence[str] | Callable[[], Sequence[str]]
    status_file: Path | None = None


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
        args = step.args() if callable(step.args) else step.args
        self.state.stage = f"{step.name} ({self.index + 1}/{len(self.steps)})"
        self.current = self.launcher(args, self.jobs_root, self.kind, self.label or step.name, self.python,
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
                    self._start_next()
                except Exception as exc:  # e.g. the next step's arguments cannot be built
                    self._end(FAILED, f"{self.steps[self.index].name}: {exc}")
            else:
                self._end(status, self.current.state.message)
        return events

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
        self._stopped = True
        if self.current is not None:
            self.current.kill()

    def wait(self, timeout: float | None = None, interval: float = 0.1) -> JobState:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.state.status == RUNNING:
            self.poll()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.kind} still running after {timeout} s.")
            if self.state.status == RUNNING:
                time.sleep(interval)
        return self.state


def kill_process_tree(process: psutil.Process | None, extra: Sequence[psutil.Process] = (),
                      timeout: float = 5.0) -> None:
    """Terminate ``process``, all its descendants and ``extra`` processes; kill what is left after ``timeout``."""
    procs = list(extra)
    if process is not None:
        procs = [process, *_descendants(process), *procs]
    procs = [p for p in procs if _same_process_alive(p)]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


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


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def _same_process_alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _new_job_folder(jobs_root: Path, kind: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        folder = jobs_root / f"{stamp}-{kind}" if suffix == 0 else jobs_root / f"{stamp}-{kind}-{suffix}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise AutoSegNetError(f"Could not create a job folder in {jobs_root}.")


def _detached_process_options() -> dict:
    """Own process group, so a clean stop reaches only the engine and Slicer's exit does not end it."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}
