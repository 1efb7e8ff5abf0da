"""The module's workflow with its jobs on an AutoSegNet server: a real ``autosegnet serve`` process, real MRML.

Export uploads the changed cases; train, stop, resume, segment (imported into a segmentation node exactly as a
local prediction), add the corrected case and retrain all run on the server, followed through
``Workflow.poll`` -- the function the panel's timer calls -- never through a blocking wait.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from AutoSegNetSceneLib.engines import RemoteEngine, local_path, server_arguments
from AutoSegNetSceneLib.selftest import TINY_TRAINING, heavy_parts_missing
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case
from AutoSegNetSceneLib.workflow import Workflow

from AutoSegNetLib.remote.connection import Connection
from AutoSegNetLib.remote.remote_job import RemoteJob
from Testing.engine._helpers_server import ALICE, BOB, running_server

pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi, uvicorn)")


def poll_until(workflow, done, timeout_s=600.0, what="job"):
    deadline = time.monotonic() + timeout_s
    longest = 0.0
    while not done():
        started = time.perf_counter()
        workflow.poll()
        longest = max(longest, time.perf_counter() - started)
        assert time.monotonic() < deadline, f"{what}: not done after {timeout_s} s"
        time.sleep(0.05)
    return longest


def test_server_arguments_drop_the_workspace_and_make_its_paths_relative(tmp_path):
    args = ["train", "D", "2d", "all", "--pretrained", str(tmp_path / "versions/D/v001/fold_all/c.pth"),
            "--workspace", str(tmp_path), "--progress", "json"]
    assert server_arguments(args, tmp_path) == ["train", "D", "2d", "all", "--pretrained",
                                                "versions/D/v001/fold_all/c.pth"]
    with pytest.raises(ValueError, match="outside the workspace"):
        server_arguments(["predict", "-i", "/elsewhere/images"], tmp_path)


def test_a_file_the_server_names_outside_the_workspace_is_never_written(tmp_path):
    assert local_path(tmp_path, "results/D/m/plans.json") == tmp_path.resolve() / "results/D/m/plans.json"
    for bad in ("../outside.json", "results/../../outside.json", "/etc/passwd"):
        with pytest.raises(ValueError, match="outside the workspace"):
            local_path(tmp_path, bad)


@pytest.fixture
def a_server(tmp_path):
    with running_server(tmp_path / "server") as server:
        yield server


def test_the_loop_runs_on_a_server_through_the_module_workflow(a_scene, tmp_path, a_server):
    if heavy_parts_missing():
        pytest.skip(heavy_parts_missing())
    engine = RemoteEngine(Connection(a_server.url, ALICE))
    workflow = Workflow(a_scene, engine=engine)
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"case {index}", seed=index)
        workflow.training_set().add_case([volume], segmentation)
    local = tmp_path / "client"
    dataset = DatasetSettings(local, 991, "Remote", ("CT",))
    training = TrainingSettings(configuration="3d_fullres", fold="all", epochs=30, iterations_per_epoch=2,
                                device="cpu", extra_args=TINY_TRAINING)
    server_root = a_server.workspace / "clients" / "alice"

    job = workflow.start_training(dataset, training)
    longest = poll_until(workflow, lambda: job.state.history or not job.running, what="first epoch")
    workflow.stop("train")
    longest = max(longest, poll_until(workflow, lambda: not job.running, what="stop"))
    assert job.state.status == "stopped", job.state.message
    assert list(server_root.glob("results/Dataset991_Remote/*/fold_all/checkpoint_latest.pth"))
    assert sorted(p.name for p in (server_root / "raw/Dataset991_Remote/labelsTr").iterdir()) == \
        ["case_0001.nii.gz", "case_0002.nii.gz"]

    job = workflow.start_training(dataset, training, resume=True)
    poll_until(workflow, lambda: job.state.stage.startswith("train (1/2)") and job.state.epoch, what="resumed")
    job.detach()  # Slicer restarted: the old session follows nothing any more
    del workflow.jobs["train"]
    restarted = Workflow(a_scene, engine=RemoteEngine(Connection(a_server.url, ALICE)))
    found = restarted.reattach(dataset)
    assert [j.kind for j in found] == ["train"] and restarted.jobs["train"].running
    job = restarted.jobs["train"]  # the training, then the version save its chain would have run
    longest = max(longest, poll_until(restarted, lambda: not job.running, what="re-attached training"))
    assert job.state.history[-1]["epoch"] == training.epochs  # the whole history came back
    assert job.state.status == "finished", (job.state.message, job.log_tail())
    assert job.state.history[0]["epoch"] > 1
    models = engine.refresh_models(local)
    assert [m.version for m in models if m.version] == ["v001"]
    model = models[-1]
    assert sorted(model.labels.values()) == ["ball", "box"]
    assert not list(local.glob("**/*.pth")), "the client mirrors model metadata, never checkpoints"

    target, _, _ = add_synthetic_case(a_scene, "target", seed=7)
    job = workflow.start_segmentation(local, [target], model, fast_preview=True)
    longest = max(longest, poll_until(workflow, lambda: not job.running, what="segmentation"))
    assert job.state.status == "finished", (job.state.message, job.log_tail())
    result = workflow.take_new_segmentation()
    segmentation = result.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["ball", "box"]

    # Slicer closed while the server predicts: a restarted module re-attaches, downloads and imports the result
    job = workflow.start_segmentation(local, [target], model, fast_preview=True)
    poll_until(workflow, lambda: job.state.stage.startswith("predict (2/3)"), what="prediction on the server")
    job.detach()
    del workflow.jobs["segment"]
    restarted = Workflow(a_scene, engine=RemoteEngine(Connection(a_server.url, ALICE)))
    restarted.reattach(dataset)
    poll_until(restarted, lambda: not restarted.jobs["segment"].running, what="re-attached prediction")
    assert restarted.jobs["segment"].state.status == "finished", restarted.jobs["segment"].state.message
    again = restarted.take_new_segmentation()
    assert again is not None and again.GetSegmentation().GetNumberOfSegments() == 2

    workflow.training_set().add_case([target], result, corrected=True)
    job = workflow.start_retraining(dataset, training, model)
    longest = max(longest, poll_until(workflow, lambda: not job.running, what="retraining"))
    assert job.state.status == "finished", (job.state.message, job.log_tail())
    assert len(list((server_root / "raw/Dataset991_Remote/labelsTr").iterdir())) == 3
    assert [m.version for m in engine.refresh_models(local) if m.version] == ["v001", "v002"]
    assert longest < 0.2, f"a poll took {longest:.3f} s: the GUI thread must never wait on the server"
    assert np.all(np.isfinite([e["train_loss"] for e in job.state.history]))

    # a model zip exported on the server, downloaded, and installed through another client's module
    export = RemoteJob.submit(engine.connection, "export-model", ["-d", "Dataset991_Remote", "-c", "3d_fullres",
                                                                  "-o", "jobs/export/model.zip"], local / "jobs/x")
    assert export.wait(300).status == "finished", export.log_tail()
    engine.connection.download("jobs/export/model.zip", tmp_path / "model.zip")
    bob = Workflow(a_scene, engine=RemoteEngine(Connection(a_server.url, BOB)))
    job = bob.start_model_install(tmp_path / "bob", tmp_path / "model.zip")
    poll_until(bob, lambda: not job.running, what="install")
    assert job.state.status == "finished", (job.state.message, job.log_tail())
    installed = bob.engine.refresh_models(tmp_path / "bob")
    assert [m.dataset for m in installed] == ["Dataset991_Remote"] and installed[0].labels == model.labels
