"""Process supervision for engine jobs: launch detached, ask to stop through a file, end a process tree.

Inside Slicer the engine runs under ``PythonSlicer``, a launcher that starts ``python-real`` as its child and
does not forward signals: a SIGINT to the launcher ends the launcher only and leaves the engine running, and a
console-less Slicer on Windows cannot send CTRL_BREAK at all. So a stop is a **file** the engine watches
(``<job folder>/stop``, passed as ``--stop-file``): the engine finishes its current step, saves, and exits.
Killing the process tree is the last resort, and it never blocks: :class:`TreeKiller` terminates, then kills
what is left on a later call, so the GUI thread that polls jobs is never kept waiting.

A process is identified by its ID *and* start time, so a reused ID never makes us follow or kill a stranger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.stop import STOP_FILE_NAME

log = logging.getLogger(__name__)

STOP_FILE = STOP_FILE_NAME  # also the name a training watches in its fold folder
EVENTS_FILE = "events.jsonl"
LOG_FILE = "engine.log"


def engine_python() -> str:
    """Slicer's ``PythonSlicer`` when there is one on the PATH, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def engine_root() -> Path:
    """The folder that contains the ``AutoSegNetLib`` package (put on the child's ``PYTHONPATH``)."""
    import AutoSegNetLib

    return Path(AutoSegNetLib.__file__).resolve().parent.parent


def engine_command(args: Sequence[str], stop_file: Path, python: str | None = None) -> list[str]:
    """``<python> -m AutoSegNetLib --stop-file <stop_file> *args``."""
    return [python or engine_python(), "-m", "AutoSegNetLib", "--stop-file", str(stop_file), *map(str, args)]


def engine_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``AutoSegNetLib`` importable, unbuffered output."""
    child_env = dict(os.environ if env is None else env)
    root = str(engine_root())
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, child_env.get("PYTHONPATH", "")) if p)
    child_env["PYTHONUNBUFFERED"] = "1"
    return child_env


def launch(command: Sequence[str], folder: Path, env: dict[str, str] | None, cwd: str) -> subprocess.Popen:
    """Start ``command`` detached, stdout to ``<folder>/events.jsonl``, stderr to ``<folder>/engine.log``."""
    log.info("Starting: %s", " ".join(map(str, command)))
    with open(folder / EVENTS_FILE, "wb") as stdout, open(folder / LOG_FILE, "wb") as stderr:
        return subprocess.Popen(list(map(str, command)), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd, **_detached_process_options())


def request_stop(folder: Path) -> Path:
    """Write the stop request the engine watches; returns its path."""
    path = Path(folder) / STOP_FILE
    path.write_text(f"stop requested at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    return path


def find_process(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is still the one started at ``create_time`` (else None: gone or ID reused)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if create_time is not None and abs(process.create_time() - create_time) > 1.0:
            return None
        return process
    except psutil.Error:
        return None


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(process: psutil.Process | None) -> list[psutil.Process]:
    if process is None:
        return []
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


class TreeKiller:
    """Ends a set of processes without waiting: ``terminate`` now, ``kill`` survivors after ``grace_s``.

    Call :meth:`step` from the polling timer until :attr:`done`; each call returns at once.
    """

    def __init__(self, processes: Sequence[psutil.Process], grace_s: float = 3.0) -> None:
        self.processes = [p for p in processes if is_alive(p)]
        self.deadline = time.monotonic() + grace_s
        self._killed = False
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                process.terminate()

    @property
    def done(self) -> bool:
        self.processes = [p for p in self.processes if is_alive(p)]
        return not self.processes

    def step(self) -> bool:
        """Kill survivors once the grace period is over; True when every process has ended."""
        if self.done:
            return True
        if not self._killed and time.monotonic() >= self.deadline:
            log.warning("Killing %d process(es) that did not end after terminate.", len(self.processes))
            for process in self.processes:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            self._killed = True
        return self.done


def new_job_folder(jobs_root: Path, kind: str) -> Path:
    """A fresh ``<jobs_root>/<date-time>-<kind>[-n]`` folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for suffix in range(1000):
        folder = jobs_root / (f"{stamp}-{kind}" if suffix == 0 else f"{stamp}-{kind}-{suffix}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise AutoSegNetError(f"Could not create a job folder in {jobs_root}.")


def _detached_process_options() -> dict:
    """Own process group / session, so that Slicer's exit (or a Ctrl+C in its terminal) does not end the job."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}
    return {"start_new_session": True}
