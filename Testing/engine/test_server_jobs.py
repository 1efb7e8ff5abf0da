"""``autosegnet serve`` jobs from the client library: upload -> plan -> train -> stop -> resume -> predict ->
download, a resumed event stream, and a server restart in the middle of a training.

A real server process runs real engine jobs on a tiny synthetic dataset (CPU).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.remote.dataset_sync import sync_dataset
from AutoSegNetLib.remote.remote_job import RemoteJob
from Testing.engine._helpers_server import Server, running_server, synthetic_raw_dataset

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi, uvicorn)")

DATASET = "Dataset900_SyntheticEllipsoids"
TINY = ["--iterations", "2", "--val-iterations", "1", "--batch-size", "2", "--num-workers", "0", "--device", "cpu",
        "--save-every", "1"]


def run(connection, tmp_path, command, *args, timeout=600, **kwargs) -> RemoteJob:
    job = RemoteJob.submit(connection, command, list(args), tmp_path / "jobs" / f"{command}-{time.monotonic_ns()}",
                           **kwargs)
    job.wait(timeout)
    assert job.state.status == "finished", (command, job.state.status, job.state.message, job.log_tail())
    return job


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A server with an uploaded, planned dataset and a 2-epoch model; yields (server, local folder)."""
    local = tmp_path_factory.mktemp("client")
    with running_server(tmp_path_factory.mktemp("server") / "workspace") as server:
        connection = server.connection()
        report = sync_dataset(connection, synthetic_raw_dataset(local / "workspace", 4))
        assert (len(report.uploaded), report.unchanged) == (4, [])
        run(connection, local, "plan-and-preprocess", DATASET, "-c", "3d_fullres", "-np", "1")
        run(connection, local, "train", DATASET, "3d_fullres", "all", "--epochs", "2", *TINY)
        yield server, local


def test_a_second_upload_sends_only_the_changed_case_and_removes_the_dropped_one(tmp_path):
    with running_server(tmp_path / "server") as server:
        folder = synthetic_raw_dataset(tmp_path / "local", 3)
        sync_dataset(server.connection(), folder)
        import json

        data = json.loads((folder / "dataset.json").read_text())
        data["autosegnet"]["case_hashes"]["case_001"] = "changed"
        del data["autosegnet"]["case_hashes"]["case_002"]
        (folder / "dataset.json").write_text(json.dumps(data))
        report = sync_dataset(server.connection(), folder)
        assert (report.uploaded, report.unchanged, report.removed) == (["case_001"], ["case_000"], ["case_002"])
        server_raw = server.workspace / "clients" / "alice" / "raw" / DATASET
        assert sorted(p.name for p in (server_raw / "labelsTr").iterdir()) == ["case_000.nii.gz", "case_001.nii.gz"]


def test_a_trained_model_is_listed_and_predicts_an_uploaded_image_that_downloads_intact(trained, tmp_path):
    server, local = trained
    connection = server.connection()
    models = connection.json("GET", "/v1/models")
    assert [m["path"] for m in models] == [f"results/{DATASET}/AutoSegNet__nnUNetPlans__3d_fullres"]
    assert models[0]["folds"] == ["all"]
    image = local / "workspace" / "raw" / DATASET / "imagesTr" / "case_000_0000.nii.gz"
    connection.upload("PUT", "/v1/files/jobs/pred-1/input/case_000_0000.nii.gz", image)
    run(connection, tmp_path, "predict", "-i", "jobs/pred-1/input", "-o", "jobs/pred-1/output", "--model-folder",
        models[0]["path"], "-f", "all", "--no-tta", "--device", "cpu")
    listing = connection.json("GET", "/v1/files/jobs/pred-1/output")
    assert "jobs/pred-1/output/case_000.nii.gz" in [f["path"] for f in listing["files"]]
    target = tmp_path / "case_000.nii.gz"
    connection.download("jobs/pred-1/output/case_000.nii.gz", target)
    on_server = server.workspace / "clients" / "alice" / "jobs" / "pred-1" / "output" / "case_000.nii.gz"
    assert target.read_bytes() == on_server.read_bytes()
    labels, _ = io_for(".nii.gz").read_seg(target)
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_the_event_stream_resumes_after_a_given_event_number(trained, tmp_path):
    server, _ = trained
    connection = server.connection()
    train = next(j for j in connection.json("GET", "/v1/jobs") if j["command"] == "train")
    everything = list(connection.events(train["id"], 0))
    assert everything[-1][1] == "end" and everything[-1][2]["status"] == "finished"
    numbered = [(n, e) for n, name, e in everything if name != "end"]
    assert [n for n, _ in numbered] == list(range(1, len(numbered) + 1))
    tail = list(connection.events(train["id"], 3))
    assert [(n, e) for n, name, e in tail if name != "end"] == numbered[3:]


def test_a_training_stopped_through_the_api_saves_and_continue_resumes_it(trained, tmp_path):
    server, _ = trained
    connection = server.connection()
    job = RemoteJob.submit(connection, "train", [DATASET, "3d_fullres", "0", "--epochs", "50", *TINY],
                           tmp_path / "job")
    deadline = time.monotonic() + 300
    while not job.state.history and time.monotonic() < deadline:
        job.poll()
        time.sleep(0.1)
    job.stop()
    job.wait(300)
    assert job.state.status == "stopped", job.state.message
    epochs_done = job.state.history[-1]["epoch"]
    resumed = RemoteJob.submit(connection, "train", [DATASET, "3d_fullres", "0", "--epochs", str(epochs_done + 1),
                                                     "--continue", *TINY], tmp_path / "resumed")
    resumed.wait(300)
    assert resumed.state.status == "finished", resumed.log_tail()
    assert [e["epoch"] for e in resumed.state.history] == [epochs_done + 1]


def test_a_restarted_server_re_attaches_to_a_running_training_and_a_client_follows_it_on(trained, tmp_path):
    server, _ = trained
    job = RemoteJob.submit(server.connection(), "train", [DATASET, "3d_fullres", "1", "--epochs", "50", *TINY],
                           tmp_path / "job")
    while not job.state.history:
        job.poll()
        time.sleep(0.1)
    seen = len(job.state.history)
    server.stop()
    restarted = Server(server.workspace, server.port)
    try:
        listed = {j["id"]: j for j in restarted.connection().json("GET", "/v1/jobs")}
        assert listed[job.id]["status"] == "running"
        deadline = time.monotonic() + 120
        while len(job.state.history) <= seen and time.monotonic() < deadline:
            job.poll()  # the client's thread reconnects on its own
            time.sleep(0.1)
        assert len(job.state.history) > seen, "no new epoch reached the client after the restart"
        job.stop()
        job.wait(300)
        assert job.state.status == "stopped"
    finally:
        restarted.stop()
        server.process = restarted.process
