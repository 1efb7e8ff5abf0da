"""Issue #14, one run per unit of work: a second training of the same fold, or a second preprocessing of the same
configuration, is refused at once with the running process named; the lock of a killed process is taken over."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from _helpers_training import DATASET, raw_workspace, tiny_workspace

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.progress import read_status

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the tests start and kill POSIX processes")

REPO = Path(__file__).resolve().parents[2]
FOLD = Path("results") / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres" / "fold_0"

#: Holds a lock until killed; with "fork" it first forks a child that keeps running (like a data worker).
HOLDER = textwrap.dedent("""\
    import os, sys, time
    from AutoSegNetLib.utils.locks import FileLock
    FileLock(sys.argv[1], "Test work").acquire()
    if sys.argv[2:] == ["fork"] and os.fork() == 0:
        time.sleep(600)
        os._exit(0)
    print("held", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def start_holder(tmp_path):
    """Start processes holding a lock (killed at the end of the test, whatever happens)."""
    started: list[subprocess.Popen] = []

    def start(path: Path, *extra: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), *extra], cwd=REPO, text=True,
                                   stdout=subprocess.PIPE, start_new_session=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        if process.poll() is None or process.returncode == -signal.SIGKILL:
            kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and what it forked (its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# ----- the lock itself -----------------------------------------------------------------------------------------
def test_a_held_lock_is_refused_naming_the_holders_pid_host_command_and_start(tmp_path, start_holder):
    from AutoSegNetLib.utils.locks import FileLock, LockedError

    holder = start_holder(tmp_path / "work.lock")
    with pytest.raises(LockedError, match=rf"Other work is already running: PID {holder.pid} on host '.+', "
                                          r"command `python -c .*`, running since 20\d\d-.*work.lock.*Wait"):
        FileLock(tmp_path / "work.lock", "Other work", "Wait.").acquire()


def test_the_lock_of_a_killed_process_is_taken_over_with_a_log_message(tmp_path, start_holder, caplog):
    from AutoSegNetLib.utils.locks import FileLock, read_holder

    holder = start_holder(tmp_path / "work.lock")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with caplog.at_level(logging.WARNING), FileLock(tmp_path / "work.lock", "Test work"):
        assert read_holder(tmp_path / "work.lock").pid == os.getpid()
    assert f"PID {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert read_holder(tmp_path / "work.lock") is None  # released: the record is emptied, nothing to take over
    caplog.clear()
    with FileLock(tmp_path / "work.lock", "Test work"):
        pass
    assert "Taking over" not in caplog.text


def test_a_child_forked_by_the_holder_does_not_keep_the_lock_after_the_holder_is_killed(tmp_path, start_holder):
    from AutoSegNetLib.utils.locks import FileLock

    holder = start_holder(tmp_path / "work.lock", "fork")
    os.kill(holder.pid, signal.SIGKILL)  # its forked child lives on in the same session
    holder.wait(timeout=30)
    with FileLock(tmp_path / "work.lock", "Test work"):
        pass


# ----- preprocessing -------------------------------------------------------------------------------------------
def test_preprocessing_a_configuration_another_process_preprocesses_is_refused_naming_it(tmp_path, start_holder):
    from AutoSegNetLib.preprocessing.preprocess_dataset import LOCK_FILE

    workspace = raw_workspace(tmp_path, n_cases=2)
    folder = workspace.preprocessed / DATASET / "AutoSegNetPlans_3d"
    holder = start_holder(folder / LOCK_FILE)
    with pytest.raises(AutoSegNetError, match=rf"(?s)Preprocessing of {DATASET} 3d_fullres is already running: "
                                              rf"PID {holder.pid}.*Wait for it"):
        preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    kill_group(holder)
    assert not preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)["stopped"]


# ----- training ------------------------------------------------------------------------------------------------
class EventReader:
    """Reads JSON events from a process's stdout in a thread, so a hanging engine fails the test (no deadlock)."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True).start()

    def until(self, event: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = json.loads(self.lines.get(timeout=max(0.1, deadline - time.monotonic())))
            if found["event"] == event:
                return found


def test_a_second_training_of_a_fold_exits_at_once_naming_the_first_which_a_later_run_takes_over_once_killed(
        tmp_path):
    tiny_workspace(tmp_path)
    engine = [sys.executable, "-m", "AutoSegNetLib", "--workspace", str(tmp_path), "--progress", "json", "train", "1",
              "3d_fullres", "0", "--device", "cpu", "--val-iterations", "1", "--no-final-validation"]
    first = subprocess.Popen([*engine, "--epochs", "1000", "--iterations", "50"], cwd=REPO, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        EventReader(first.stdout).until("stage")  # the training has started: it holds the fold's lock
        started = time.monotonic()
        second = subprocess.run([*engine, "--epochs", "1", "--iterations", "1"], cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 2 and time.monotonic() - started < 60
        assert f"is already running: PID {first.pid}" in second.stderr, second.stderr
        assert "train 1 3d_fullres 0" in second.stderr and "running since" in second.stderr
        assert read_status(tmp_path / FOLD / "status.json")["event"] != "error"  # the first run's status is intact
        assert first.poll() is None
    finally:
        kill_group(first)
    third = subprocess.run([*engine, "--epochs", "1", "--iterations", "2"], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    assert third.returncode == 0, third.stderr
    assert f"PID {first.pid}" in third.stderr and "no longer running" in third.stderr
    assert (tmp_path / FOLD / "checkpoint_final.pth").is_file()
