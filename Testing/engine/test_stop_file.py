"""Stopping the engine through a stop file (``--stop-file``), for callers whose signals never reach it: training
under a launcher that does not forward signals (as 3D Slicer's PythonSlicer), predict, verify, preprocess,
plan-and-preprocess and install-model stopping between cases, and the file-watching StopRequest itself."""

from __future__ import annotations

import json
import os
import pickle
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch
from _helpers_inference import blob_image, geometry, tiny_configuration, tiny_dataset_json, write_model_folder
from _helpers_training import DATASET, raw_workspace, tiny_config, tiny_workspace

from AutoSegNetLib.cli import _command_in, build_parser, main
from AutoSegNetLib.dataset.verify import verify_dataset
from AutoSegNetLib.demo.synthetic import write_synthetic_dataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference import Predictor, predict_files
from AutoSegNetLib.models import export_model, install_model
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.preprocessing.storage import INCOMPLETE_MARKER
from AutoSegNetLib.progress import ProgressReporter, read_status
from AutoSegNetLib.training.checkpoint import load_checkpoint
from AutoSegNetLib.training.fold_setup import prepare_fold
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.utils.workers import run_parallel
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[2]
FOLD = Path("results") / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres" / "fold_0"

#: A launcher like PythonSlicer: starts the engine as its child, ignores SIGINT/SIGTERM itself and does not pass
#: them on, and exits with the child's exit status.
LAUNCHER = textwrap.dedent("""\
    import signal, subprocess, sys
    child = subprocess.Popen(sys.argv[1:])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(child.wait())
""")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CreateStopFileAt(ProgressReporter):
    """Records events and creates ``stop_file`` when the ``n``-th ``case`` event is emitted."""

    def __init__(self, stop_file: Path, n: int = 1) -> None:
        super().__init__("none")
        self.stop_file, self.n, self.events = stop_file, n, []

    def emit(self, event, **fields):
        self.events.append({"event": event, **fields})
        if event == "case" and sum(e["event"] == "case" for e in self.events) == self.n:
            self.stop_file.touch()
        return super().emit(event, **fields)


class StopAtCheck(StopRequest):
    """A stop request that becomes requested at its ``n``-th check (counts the checks)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.checks = n, 0

    @property
    def requested(self) -> bool:
        self.checks += 1
        if self.checks >= self.n:
            self.request("test")
        return super().requested


def json_events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ----- the stop request --------------------------------------------------------------------------------------
def test_a_stop_file_is_seen_at_the_first_check_and_deleting_it_does_not_cancel_the_stop(tmp_path):
    stop_file = tmp_path / "stop"
    stop = StopRequest(stop_file, min_interval_s=0)
    assert not stop.requested
    stop_file.touch()
    assert stop.requested and stop.reason == f"stop file {stop_file}"
    stop_file.unlink()
    assert stop.requested


def test_the_stop_file_is_looked_at_no_more_often_than_the_interval(tmp_path):
    clock = FakeClock()
    stop = StopRequest(tmp_path / "stop", min_interval_s=0.5, clock=clock)
    assert not stop.requested
    (tmp_path / "stop").touch()
    clock.now = 0.49
    assert not stop.requested
    clock.now = 0.5
    assert stop.requested


def test_without_a_stop_file_only_a_request_stops_and_raise_if_requested_names_the_work(tmp_path):
    stop = StopRequest()
    assert not stop.requested
    stop.raise_if_requested("unpacking")
    stop.request("SIGINT")
    with pytest.raises(StopRequested, match=r"stop requested \(SIGINT\): unpacking"):
        stop.raise_if_requested("unpacking")


def test_a_pickled_stop_request_watches_the_same_file(tmp_path):
    copy = pickle.loads(pickle.dumps(StopRequest(tmp_path / "stop", min_interval_s=0)))
    assert not copy.requested
    (tmp_path / "stop").touch()
    assert copy.requested


def _square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [0, 2])
def test_run_parallel_starts_no_item_after_a_stop_but_finishes_those_in_flight(workers):
    stop = StopRequest()
    results = []
    for _item, result in run_parallel(_square, range(6), workers, stop=stop):
        results.append(result)
        if len(results) == 2:
            stop.request()
    # in this process: exactly the two; with 2 workers at most the one other item already in flight
    assert len(results) == 2 if workers == 0 else 2 <= len(results) <= 3


# ----- the CLI option ----------------------------------------------------------------------------------------
def test_the_stop_file_option_is_accepted_before_and_after_the_command():
    before = ["--stop-file", "train", "verify", "4"]
    assert _command_in(before) == "verify"
    assert build_parser("verify").parse_args(before).stop_file == Path("train")
    assert build_parser("verify").parse_args(["verify", "4", "--stop-file", "x"]).stop_file == Path("x")
    assert build_parser("verify").parse_args(["verify", "4"]).stop_file is None


# ----- training under a launcher that does not forward signals -------------------------------------------------
class EventReader:
    """Reads JSON events from a process's stdout in a thread, so a hanging engine fails the test (no deadlock)."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True).start()

    def next_event(self, timeout: float = 60.0) -> dict:
        line = self.lines.get(timeout=timeout)
        return json.loads(line)

    def until(self, event: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = self.next_event(max(0.1, deadline - time.monotonic()))
            if found["event"] == event:
                return found


def _step(event: dict) -> int:
    """Global step number of an ``iteration`` event (its epoch is 1-based, the one running)."""
    return (event["epoch"] - 1) * event["iterations"] + event["iteration"]


def test_a_stop_file_stops_training_cleanly_under_a_launcher_that_swallows_signals_and_continue_resumes(tmp_path):
    tiny_workspace(tmp_path)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    (tmp_path / "config.json").write_text(json.dumps({"iteration_event_every": 1}))
    stop_file = tmp_path / "stop"
    engine = [sys.executable, "-m", "AutoSegNetLib", "--progress", "json", "--stop-file", str(stop_file),
              "--workspace", str(tmp_path), "train", "1", "3d_fullres", "0", "--config", str(tmp_path / "config.json"),
              "--device", "cpu", "--epochs", "1000", "--iterations", "50", "--val-iterations", "2",
              "--no-final-validation"]
    launcher = subprocess.Popen([sys.executable, str(tmp_path / "launcher.py"), *engine], cwd=REPO,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        events = EventReader(launcher.stdout)
        events.until("iteration")
        os.kill(launcher.pid, signal.SIGINT)  # what a caller does today; the launcher swallows it
        signalled_at = _step(events.until("iteration"))
        later = [_step(events.until("iteration")) for _ in range(3)]
        assert later == [signalled_at + 1, signalled_at + 2, signalled_at + 3]  # the engine never saw the signal
        assert launcher.poll() is None
        stop_file.touch()
        done = events.until("done")
        assert launcher.wait(timeout=60) == 0
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)  # the launcher's own session: it and the engine only
    assert done["status"] == "stopped" and done["checkpoint"] == str(tmp_path / FOLD / "checkpoint_latest.pth")
    latest = load_checkpoint(tmp_path / FOLD / "checkpoint_latest.pth")
    epoch, iteration = latest["epoch"], latest["log"]["in_progress"]["iteration"]
    assert (done["epoch"], done["iteration"]) == (epoch, iteration)
    assert epoch * 50 + iteration >= signalled_at + 3 and epoch < 1000
    assert not (tmp_path / FOLD / "checkpoint_final.pth").exists()

    stop_file.unlink()
    resumed = subprocess.run([*engine[:5], *engine[7:], "--continue", "--epochs", str(epoch + 1)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = json_events(resumed.stdout)
    first = next(e for e in after if e["event"] == "iteration")
    assert (first["epoch"], first["iteration"]) == (epoch + 1, iteration + 1)  # continues, does not restart
    assert after[-1]["event"] == "done" and after[-1]["status"] == "finished"
    assert (tmp_path / FOLD / "checkpoint_final.pth").is_file()


def test_a_stop_file_present_from_the_start_stops_training_after_one_step(tmp_path, capsys):
    tiny_workspace(tmp_path)
    (tmp_path / "stop").touch()
    assert main(["--workspace", str(tmp_path), "--progress", "json", "--stop-file", str(tmp_path / "stop"), "train",
                 "1", "3d_fullres", "0", "--device", "cpu", "--epochs", "2", "--iterations", "5"]) == 0
    done = json_events(capsys.readouterr().out)[-1]
    assert (done["event"], done["status"], done["epoch"], done["iteration"]) == ("done", "stopped", 0, 1)


def test_a_stop_request_in_the_fold_folder_stops_a_training_started_without_a_stop_file(tmp_path, capsys):
    """How 3D Slicer stops a training it only found through its ``status.json`` (e.g. started in a terminal)."""
    tiny_workspace(tmp_path)

    def request_stop_after_the_first_step() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for status in tmp_path.glob("results/*/*/fold_0/status.json"):
                if (read_status(status) or {}).get("event") == "iteration":
                    (status.parent / "stop").touch()
                    return
            time.sleep(0.02)

    watcher = threading.Thread(target=request_stop_after_the_first_step)
    watcher.start()
    assert main(["--workspace", str(tmp_path), "--progress", "json", "train", "1", "3d_fullres", "0", "--device",
                 "cpu", "--epochs", "3", "--iterations", "20"]) == 0
    watcher.join()
    done = json_events(capsys.readouterr().out)[-1]
    assert (done["event"], done["status"]) == ("done", "stopped") and done["epoch"] < 3


def test_a_stop_request_left_in_the_fold_folder_by_an_earlier_run_is_removed_first(tmp_path, capsys):
    tiny_workspace(tmp_path)
    args = ["--workspace", str(tmp_path), "--progress", "json", "train", "1", "3d_fullres", "0", "--device", "cpu",
            "--epochs", "1", "--iterations", "2"]
    assert main([*args[:4], "--stop-file", str(tmp_path / "stop"), *args[4:]]) == 0  # creates the fold folder
    [fold] = tmp_path.glob("results/*/*/fold_0")
    (fold / "stop").touch()
    capsys.readouterr()
    assert main(args) == 0
    done = json_events(capsys.readouterr().out)[-1]
    assert done["event"] == "done" and done.get("status") != "stopped"
    assert not (fold / "stop").exists()


# ----- predict -----------------------------------------------------------------------------------------------
@pytest.fixture
def a_predict_job(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny model folder and an input folder of three cases a, b, c."""
    folder = write_model_folder(tmp_path / "ws" / "results", tiny_configuration(), tiny_dataset_json(),
                                mirror_axes=None)
    for seed, name in enumerate("abc"):
        io_for(".nii.gz").write_image(blob_image((8, 8, 8), seed=seed)[0], tmp_path / "in" / f"{name}_0000.nii.gz",
                                      geometry())
    return folder, tmp_path / "in"


def test_predict_with_a_stop_file_present_from_the_start_writes_nothing_and_exits_0(tmp_path, a_predict_job, capsys):
    model_folder, inputs = a_predict_job
    (tmp_path / "stop").touch()
    assert main(["--progress", "json", "--stop-file", str(tmp_path / "stop"), "predict", "-i", str(inputs), "-o",
                 str(tmp_path / "out"), "--model-folder", str(model_folder), "--device", "cpu"]) == 0
    done = json_events(capsys.readouterr().out)[-1]
    assert done == {**done, "event": "done", "stage": "predict", "status": "stopped", "cases": 0, "total": 3}
    assert not (tmp_path / "out").exists()


def test_predict_stops_between_cases_and_leaves_only_complete_files(tmp_path, a_predict_job):
    model_folder, inputs = a_predict_job
    reporter = CreateStopFileAt(tmp_path / "stop", n=1)
    predictor = Predictor.from_model_folder(model_folder, device="cpu")
    written = predict_files(predictor, inputs, tmp_path / "out", save_probabilities=True, reporter=reporter,
                            stop=StopRequest(tmp_path / "stop", min_interval_s=0))
    assert [p.name for p in written] == ["a.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.json", "a.nii.gz", "a.npz",
                                                                    "prediction_info.json"]
    assert reporter.events[-1] == {"event": "done", "stage": "predict", "status": "stopped", "cases": 1, "total": 3}
    assert io_for(".nii.gz").read_seg(written[0])[0].shape == (8, 8, 8)


# ----- verify ------------------------------------------------------------------------------------------------
@pytest.fixture
def a_raw_dataset(tmp_path: Path) -> Workspace:
    """Four synthetic raw cases (``autosegnet demo``'s generator), Dataset900."""
    workspace = Workspace.at(tmp_path / "ws").create()
    write_synthetic_dataset(workspace, num_cases=4)
    return workspace


@pytest.mark.parametrize("workers, checked", [(0, 1), (2, 2)])
def test_verify_stops_between_cases_with_an_incomplete_report(tmp_path, a_raw_dataset, workers, checked):
    reporter = CreateStopFileAt(tmp_path / "stop", n=1)
    folder = a_raw_dataset.raw_dataset("900")
    report = verify_dataset(folder, num_workers=workers, reporter=reporter,
                            stop=StopRequest(tmp_path / "stop", min_interval_s=0))
    assert not report.complete and report.checked_cases == checked
    assert reporter.events[-1] == {"event": "done", "stage": "verify", "status": "stopped", "checked": checked,
                                   "total": 4, "errors": 0, "warnings": 0}


def test_cli_verify_stopped_exits_0_without_a_verdict_or_report(tmp_path, a_raw_dataset, capsys, caplog):
    (tmp_path / "stop").touch()
    assert main(["--workspace", str(tmp_path / "ws"), "--progress", "json", "verify", "900", "--report",
                 str(tmp_path / "report.json"), "--stop-file", str(tmp_path / "stop")]) == 0
    assert json_events(capsys.readouterr().out)[-1]["status"] == "stopped"
    assert "STOPPED on request after 0 of 4 cases" in caplog.text
    assert not (tmp_path / "report.json").exists()


# ----- preprocess / plan-and-preprocess ----------------------------------------------------------------------
def test_a_stopped_preprocessing_is_refused_by_training_until_a_rerun_completes_it(tmp_path):
    workspace = raw_workspace(tmp_path, n_cases=4)
    folder = workspace.preprocessed / DATASET / "AutoSegNetPlans_3d"
    for path in folder.iterdir():
        path.unlink()
    reporter = CreateStopFileAt(tmp_path / "stop", n=1)
    summary = preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0, reporter,
                                 stop=StopRequest(tmp_path / "stop", min_interval_s=0))
    assert summary["stopped"] and summary["3d_fullres"]["preprocessed"] == ["case_000"]
    assert sorted(p.name for p in folder.glob("case_*.json")) == ["case_000.json"]
    assert (folder / INCOMPLETE_MARKER).is_file()
    with pytest.raises(AutoSegNetError, match="did not finish"):
        prepare_fold(workspace, DATASET, "3d_fullres", 0)
    again = preprocess_dataset(workspace, DATASET, ["3d_fullres"], 0)
    assert not again["stopped"] and again["3d_fullres"]["preprocessed"] == ["case_001", "case_002", "case_003"]
    assert not (folder / INCOMPLETE_MARKER).exists()
    assert len(prepare_fold(workspace, DATASET, "3d_fullres", 0).train_cases) == 3


def test_plan_and_preprocess_stopped_from_the_start_writes_no_fingerprint_or_plans(tmp_path, a_raw_dataset, capsys):
    (tmp_path / "stop").touch()
    assert main(["--workspace", str(tmp_path / "ws"), "--progress", "json", "--stop-file", str(tmp_path / "stop"),
                 "plan-and-preprocess", "900", "--verify", "-np", "0"]) == 0
    done = json_events(capsys.readouterr().out)[-1]
    assert (done["event"], done["stage"], done["status"]) == ("done", "plan-and-preprocess", "stopped")
    assert not list(a_raw_dataset.preprocessed.rglob("*.json"))


def test_cli_preprocess_stopped_between_cases_exits_0_and_a_rerun_does_the_rest(tmp_path, a_raw_dataset, capsys,
                                                                              monkeypatch):
    root = str(tmp_path / "ws")
    assert main(["--workspace", root, "--progress", "none", "fingerprint", "900", "-np", "0"]) == 0
    assert main(["--workspace", root, "--progress", "none", "plan", "900"]) == 0
    emit = ProgressReporter.emit

    def stop_after_the_first_case(self, event, **fields):
        if event == "case" and "configurations" in fields:  # a preprocessing case event
            (tmp_path / "stop").touch()
            time.sleep(0.6)  # the CLI looks at the stop file at most every 0.5 s
        return emit(self, event, **fields)

    capsys.readouterr()
    monkeypatch.setattr(ProgressReporter, "emit", stop_after_the_first_case)
    assert main(["--workspace", root, "--progress", "json", "--stop-file", str(tmp_path / "stop"), "preprocess",
                 "900", "-c", "3d_fullres", "-np", "0"]) == 0
    events = json_events(capsys.readouterr().out)
    assert events[-1] == {**events[-1], "event": "done", "stage": "preprocess", "status": "stopped",
                          "preprocessed": {"3d_fullres": 1}}
    assert len(list(a_raw_dataset.preprocessed.rglob(INCOMPLETE_MARKER))) == 1
    monkeypatch.setattr(ProgressReporter, "emit", emit)
    (tmp_path / "stop").unlink()
    assert main(["--workspace", root, "--progress", "none", "preprocess", "900", "-c", "3d_fullres", "-np", "0"]) == 0
    assert not list(a_raw_dataset.preprocessed.rglob(INCOMPLETE_MARKER))
    assert len(list(a_raw_dataset.preprocessed.rglob("case_*_seg.npy"))) == 4


# ----- install-model -----------------------------------------------------------------------------------------
@pytest.fixture
def a_model_zip(tmp_path: Path) -> Path:
    source = Workspace.at(tmp_path / "source").create()
    (source.raw / "Dataset001_Tiny").mkdir()
    write_model_folder(source.results, tiny_configuration(), tiny_dataset_json(), folds=(0, 1), mirror_axes=None)
    export_model(source, "1", ["3d_fullres"], tmp_path / "model.zip", folds=[0, 1])
    return tmp_path / "model.zip"


@pytest.mark.parametrize("check", [1, 3])
def test_install_model_stopped_before_or_while_unpacking_installs_nothing(tmp_path, a_model_zip, check):
    target = Workspace.at(tmp_path / "target").create()
    with pytest.raises(StopRequested, match="nothing was installed"):
        install_model(a_model_zip, target, stop=StopAtCheck(check))
    assert [p.name for p in target.results.rglob("*") if p.is_file()] == []
    assert not list(target.results.rglob(".install-*"))


def test_cli_install_model_with_a_stop_file_exits_0_and_installs_nothing(tmp_path, a_model_zip, capsys):
    (tmp_path / "stop").touch()
    target = Workspace.at(tmp_path / "target").create()
    assert main(["--workspace", str(tmp_path / "target"), "--progress", "json", "--stop-file", str(tmp_path / "stop"),
                 "install-model", str(a_model_zip)]) == 0
    done = json_events(capsys.readouterr().out)[-1]
    assert (done["event"], done["stage"], done["status"]) == ("done", "install-model", "stopped")
    assert not list(target.results.iterdir())


# ----- DDP ---------------------------------------------------------------------------------------------------
@pytest.mark.slow  # about 8 s: two spawned processes
def test_two_ddp_processes_watching_a_stop_file_stop_together_after_one_step(tmp_path):
    from AutoSegNetLib.training import train_in_processes

    workspace = tiny_workspace(tmp_path)
    (tmp_path / "stop").touch()
    train_in_processes(2, workspace, "1", "3d_fullres", 0, tiny_config(epochs=2, iterations_per_epoch=5), "none",
                       stop=StopRequest(tmp_path / "stop"))
    latest = load_checkpoint(tmp_path / FOLD / "checkpoint_latest.pth")
    assert (latest["epoch"], latest["log"]["in_progress"]["iteration"]) == (0, 1)
    assert read_status(tmp_path / FOLD / "status.json")["status"] == "stopped"
    assert not (tmp_path / FOLD / "checkpoint_final.pth").exists()
