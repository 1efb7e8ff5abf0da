"""Background jobs: progress events parsed, non-blocking polls, whole-tree cancel, clean stop, re-attach."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import psutil
import pytest
from AutoSegNetSceneLib import commands
from AutoSegNetSceneLib.export import export_training_set
from AutoSegNetSceneLib.job_chain import JobChain, JobStep
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.jobs.engine_job import EngineJob, find_jobs, find_status_files
from AutoSegNetLib.jobs.state import JobState, progress_fraction

FAKE = str(Path(__file__).with_name("fake_engine.py"))


def fake(tmp_path, *args, kind="train"):
    return EngineJob.start_command([sys.executable, FAKE, *map(str, args)], tmp_path / "jobs", kind)


def poll_until(job, condition, timeout=10.0):
    """Poll ``job`` until ``condition(job.state)`` holds."""
    def check():
        job.poll()
        return condition(job.state)

    wait_for(check, timeout)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def test_progress_events_are_parsed_line_by_line_and_reach_the_callbacks(tmp_path):
    job = fake(tmp_path, "epochs", 3, 0.01)
    seen, finished = [], []
    job.on_event.append(seen.append)
    job.on_finished.append(finished.append)
    state = job.wait(timeout=20)
    assert [e["event"] for e in seen] == ["stage", "epoch", "epoch", "epoch", "done"]
    assert (state.status, state.return_code, state.epoch, state.epochs, state.fraction) == ("finished", 0, 3, 3, 1.0)
    assert [e["train_loss"] for e in state.history] == pytest.approx([1.0, 0.5, 1 / 3])
    assert state.stage == "train" and job.output == ["a line that is not an event"]
    assert finished == [job] and job.poll() == []


def test_poll_returns_at_once_while_the_engine_is_busy(tmp_path):
    job = fake(tmp_path, "epochs", 2, 2.0)
    started = time.perf_counter()
    job.poll()
    assert time.perf_counter() - started < 0.1 and job.running
    job.kill()


def test_kill_ends_the_whole_process_tree(tmp_path):
    pid_file = tmp_path / "pids"
    job = fake(tmp_path, "tree", pid_file)
    wait_for(pid_file.exists)
    child, grandchild = (psutil.Process(int(p)) for p in pid_file.read_text().split())
    started = time.perf_counter()
    job.kill()
    assert time.perf_counter() - started < 0.2, "kill must not wait (it runs on Slicer's GUI thread)"
    poll_until(job, lambda state: not job.running)
    psutil.wait_procs([child, grandchild], timeout=10)
    assert not child.is_running() and not grandchild.is_running()
    assert job.state.status == "stopped"


def test_stop_lets_the_engine_finish_cleanly(tmp_path):
    job = fake(tmp_path, "graceful")
    poll_until(job, lambda state: state.stage == "train")
    job.stop(grace_s=20)
    state = job.wait(timeout=20)
    assert (state.status, state.return_code, state.last_event["status"]) == ("stopped", 0, "stopped")
    assert (job.folder / "stop").is_file()


def test_stop_reaches_an_engine_behind_a_launcher_that_forwards_no_signals(tmp_path):
    """PythonSlicer starts python-real as its child and forwards no signal: the stop file still reaches it."""
    job = fake(tmp_path, "launcher", "graceful")
    poll_until(job, lambda state: state.stage == "train")
    launcher = psutil.Process(job.pid)
    [engine] = launcher.children()
    started = time.perf_counter()
    job.stop(grace_s=30)
    assert time.perf_counter() - started < 0.2
    state = job.wait(timeout=20)
    assert (state.status, state.return_code, state.last_event["status"]) == ("stopped", 0, "stopped")
    assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE


def test_a_stubborn_engine_behind_a_launcher_is_killed_with_its_launcher_without_blocking(tmp_path):
    job = fake(tmp_path, "launcher", "stubborn")
    poll_until(job, lambda state: state.stage == "train")
    [engine] = psutil.Process(job.pid).children()
    job.stop(grace_s=0.3)
    longest = 0.0
    while job.running:
        started = time.perf_counter()
        job.poll()
        longest = max(longest, time.perf_counter() - started)
        time.sleep(0.05)
    assert job.state.status == "stopped" and longest < 0.2
    psutil.wait_procs([engine], timeout=5)
    assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE


def test_an_engine_ignoring_stop_is_killed_after_the_grace_period(tmp_path):
    job = fake(tmp_path, "stubborn")
    poll_until(job, lambda state: state.stage == "train")
    job.stop(grace_s=0.3)
    started = time.monotonic()
    state = job.wait(timeout=20)
    assert state.status == "stopped" and time.monotonic() - started < 10
    assert all(not c.is_running() or c.status() == psutil.STATUS_ZOMBIE
               for c in psutil.Process().children() if not _is_resource_tracker(c))


def _is_resource_tracker(process: psutil.Process) -> bool:
    """multiprocessing's helper process, started by earlier tests in this pytest process, not by the job."""
    try:
        return "resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def test_a_failing_engine_reports_its_error_and_keeps_its_log(tmp_path):
    state = fake(tmp_path, "fail").wait(timeout=20)
    assert (state.status, state.return_code, state.message) == ("failed", 2, "the dataset has no labels")
    assert "boom" in EngineJob.reattach(next((tmp_path / "jobs").iterdir())).log_tail()


def test_a_restarted_slicer_re_attaches_from_the_job_folder_with_the_whole_history(tmp_path):
    original = fake(tmp_path, "epochs", 4, 0.4)
    poll_until(original, lambda state: len(state.history) >= 1)
    again = EngineJob.reattach(original.folder)  # what the module does after a restart
    assert again.running and again.pid == original.pid and len(again.state.history) >= 1
    assert find_jobs(tmp_path / "jobs")[0].folder == original.folder
    state = again.wait(timeout=20)
    assert state.status == "finished" and len(state.history) == 4
    original.wait(timeout=5)
    assert find_jobs(tmp_path / "jobs") == []


def test_a_training_can_be_followed_through_its_status_file_alone(tmp_path):
    status = tmp_path / "fold_all" / "status.json"
    status.parent.mkdir()
    runner = fake(tmp_path, "epochs", 3, 0.3, status)
    wait_for(status.exists)
    follower = EngineJob.from_status_file(status)
    assert follower.running and follower.state.last_event is not None
    state = follower.wait(timeout=20)
    assert state.status == "finished" and state.last_event["event"] == "done"
    runner.wait(timeout=5)


def fake_launcher(args, jobs_root, kind, label, python, status_file, meta):
    """Runs the stand-in engine script instead of ``python -m AutoSegNetLib``."""
    return EngineJob.start_command([sys.executable, FAKE, *args], jobs_root, kind, label, meta=meta)


def test_a_status_file_that_stopped_changing_ends_the_job_and_recent_ones_are_found(tmp_path):
    status = tmp_path / "results" / "AutoSegNet__p__2d" / "fold_0" / "status.json"
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"event": "epoch", "time": 1.0, "epoch": 3, "epochs": 10}))
    assert find_status_files(tmp_path / "results") == [status]
    job = EngineJob.from_status_file(status, stale_after_s=3600)
    assert job.running and job.state.epoch == 3
    old = time.time() - 7200
    os.utime(status, (old, old))
    assert find_status_files(tmp_path / "results") == []
    job.poll()
    assert job.state.status == "failed" and "no progress reported for 1h00m" in job.state.message


def test_a_job_chain_runs_its_steps_in_order_and_forwards_their_events(tmp_path):
    steps = [JobStep("first", ["epochs", "1", "0"]), JobStep("second", lambda: ["epochs", "2", "0"])]
    chain = JobChain(steps, tmp_path / "jobs", "train", meta={"dataset": "D"}, launcher=fake_launcher).start()
    finished, events = [], []
    chain.on_finished.append(finished.append)
    chain.on_event.append(events.append)
    state = chain.wait(timeout=30)
    assert (state.status, chain.index, finished) == ("finished", 1, [chain])
    assert [e["event"] for e in events].count("epoch") == 3 and len(state.history) == 3
    assert chain.current.meta == {"dataset": "D", "step": "second"}


def test_a_job_chain_stops_at_the_first_failure(tmp_path):
    steps = [JobStep("breaks", ["fail"]), JobStep("never run", ["epochs", "1", "0"])]
    state = JobChain(steps, tmp_path / "jobs", "train", launcher=fake_launcher).start().wait(timeout=30)
    assert (state.status, state.message) == ("failed", "the dataset has no labels")
    assert len(list((tmp_path / "jobs").iterdir())) == 1


def test_stopping_a_job_chain_starts_no_further_step(tmp_path):
    steps = [JobStep("runs", ["graceful"]), JobStep("never run", ["epochs", "1", "0"])]
    chain = JobChain(steps, tmp_path / "jobs", "train", launcher=fake_launcher).start()
    poll_until(chain.current, lambda state: state.stage == "train")
    chain.stop(grace_s=20)
    assert chain.wait(timeout=30).status == "stopped" and chain.index == 0


def test_progress_fraction_reads_epochs_iterations_and_cases():
    assert progress_fraction({"event": "iteration", "epoch": 2, "epochs": 4, "iteration": 5, "iterations": 10}) \
        == pytest.approx(0.375)
    assert progress_fraction({"event": "case", "index": 3, "total": 4}) == 0.75
    assert progress_fraction({"event": "stage"}) is None
    state = JobState(epoch=3, epochs=10, eta_s=3700, train_loss=0.25, pseudo_dice={"a": 0.5, "b": float("nan")})
    assert state.describe() == "running · epoch 3/10 · ETA 1h01m · loss 0.2500 · pseudo-Dice 0.500"


def test_the_real_engine_cli_runs_as_a_job_and_its_events_are_parsed(a_scene, a_training_set, a_workspace):
    """``python -m AutoSegNetLib verify ... --progress json`` on a tiny dataset exported from the scene."""
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"p{index}", seed=index)
        a_training_set.add_case([volume], segmentation)
    dataset = DatasetSettings(a_workspace, 11, "Jobs", ("CT",))
    export_training_set(a_training_set, dataset)
    report = a_workspace / "verify.json"
    job = EngineJob.start(commands.verify(dataset, report), a_workspace / "jobs", "verify")
    events = []
    job.on_event.append(events.append)
    state = job.wait(timeout=60)
    assert (state.status, state.return_code) == ("finished", 0), job.log_tail()
    assert sorted(e["case"] for e in events if e["event"] == "case") == ["case_0001", "case_0002"]
    assert events[-1]["event"] == "done" and events[-1]["ok"] is True
    assert report.is_file() and state.fraction == 1.0
