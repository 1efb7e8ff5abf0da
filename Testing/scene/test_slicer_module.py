"""The scripted module on Slicer's real Python layer (v5.10.0 and v5.12.3) over slicer-core's real MRML.

Parameter node, logic, workflow and self-test run on Slicer's own ``parameterNodeWrapper``,
``ScriptedLoadableModule``, ``util`` and ``i18n``; the only stand-ins are the Qt parts listed in
``slicer_layer.py`` (PythonQt exists only inside the Slicer application).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import slicer
from AutoSegNetSceneLib.segment import PredictionFolders, write_prediction_input
from AutoSegNetSceneLib.selftest import heavy_parts_missing
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.jobs.engine_job import EngineJob
from Testing.scene import slicer_layer
from Testing.scene._helpers_slicer import add_segmentation, add_volume, make_model, segment_names

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE = str(Path(__file__).with_name("fake_engine.py"))
HEAVY = ("torch", "AutoSegNetLib", "SimpleITK", "psutil", "scipy", "batchgenerators")
DEFAULTS = {"datasetId": 501, "datasetName": "SlicerCases", "channelNames": "CT", "configuration": "auto",
            "fold": "all", "epochs": 100, "retrainEpochs": 20, "timeBudgetMinutes": 0.0, "device": "auto",
            "fastPreview": True, "saveUncertainty": False, "caseVolume": None, "caseLabels": None,
            "segmentVolume": None, "resultSegmentation": None, "workspace": Path.home() / "AutoSegNet"}


@pytest.fixture(scope="module", params=slicer_layer.TAGS)
def tag(request):
    if not slicer_layer.available(request.param):
        pytest.skip(slicer_layer.missing_reason(request.param))
    slicer_layer.activate(request.param)
    yield request.param
    slicer_layer.activate(slicer_layer.DEFAULT_TAG)


@pytest.fixture
def module(tag):
    return slicer_layer.load_module(tag)


@pytest.fixture
def logic(module, a_scene):
    return module.AutoSegNetLogic()


@pytest.fixture
def workflow(logic):
    return logic.workflow


@pytest.fixture
def python_slicer(tmp_path, monkeypatch):
    """A ``PythonSlicer`` on the PATH that behaves like Slicer's: a launcher that runs the real interpreter as its
    child and forwards no signal to it. The module finds it with ``shutil.which`` as inside Slicer."""
    folder = tmp_path / "slicer-bin"
    folder.mkdir()
    launcher = folder / "PythonSlicer"
    launcher.write_text(f"#!{sys.executable}\n"
                        "import subprocess, sys\n"
                        f"sys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n")
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return launcher


def test_the_real_slicer_layer_is_the_one_in_use(tag, module):
    assert f"/{tag}/slicer/parameterNodeWrapper" in slicer.parameterNodeWrapper.__file__
    assert f"/{tag}/slicer/" in sys.modules["slicer.ScriptedLoadableModule"].__file__
    assert f"/{tag}/slicer/util.py" in slicer.util.__file__


@pytest.mark.parametrize("name", slicer_layer.TAGS)
def test_loading_the_module_imports_neither_torch_nor_the_engine(name):
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if not p.endswith('Testing')]\n"
        f"from Testing.scene import slicer_layer; slicer_layer.load_module({name!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_module_describes_itself_and_registers_its_self_test(module):
    parent = type("Parent", (), {"path": str(REPO_ROOT / "AutoSegNet" / "AutoSegNet.py")})()
    module.AutoSegNet(parent)
    assert parent.title == "AutoSegNet" and parent.categories == ["Segmentation"]
    assert "AutoSegNet" in slicer.selfTests


def test_an_older_slicer_is_refused_with_a_message_that_says_what_to_do(tag, monkeypatch):
    monkeypatch.setattr(slicer.app, "majorVersion", 5, raising=False)
    monkeypatch.setattr(slicer.app, "minorVersion", 8, raising=False)
    sys.modules.pop("AutoSegNet", None)
    with pytest.raises(RuntimeError, match=r"needs 3D Slicer 5\.10 or later; this is Slicer 5\.8"):
        import AutoSegNet  # noqa: F401
    sys.modules.pop("AutoSegNet", None)


def test_a_fresh_parameter_node_has_every_default(logic, a_scene):
    parameters = logic.getParameterNode()
    assert {name: getattr(parameters, name) for name in DEFAULTS} == DEFAULTS
    assert parameters.modelZip == Path()
    assert a_scene.GetNodesByClass("vtkMRMLScriptedModuleNode").GetNumberOfItems() == 1


def test_node_parameters_take_a_segmentation_a_labelmap_and_none(logic, a_scene):
    parameters = logic.getParameterNode()
    segmentation = a_scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    labelmap = a_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    for value in (segmentation, labelmap, None):
        parameters.caseLabels = value
        assert logic.getParameterNode().caseLabels is value
    parameters.resultSegmentation = segmentation
    parameters.resultSegmentation = None
    assert parameters.resultSegmentation is None


@pytest.mark.parametrize(("name", "value"), [("datasetId", 0), ("datasetId", 1000), ("epochs", 0),
                                             ("retrainEpochs", 5001), ("timeBudgetMinutes", -1.0),
                                             ("configuration", "3d_huge"), ("fold", "7"), ("device", "tpu")])
def test_validators_refuse_out_of_range_values(logic, name, value):
    parameters = logic.getParameterNode()
    before = getattr(parameters, name)
    with pytest.raises(ValueError):
        setattr(parameters, name, value)
    assert getattr(parameters, name) == before


def test_the_parameter_node_survives_saving_and_reloading_the_scene(module, logic, a_scene):
    volume = add_volume(a_scene, np.zeros((2, 4, 4), np.int16), name="CT")
    labels = a_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    parameters = logic.getParameterNode()
    parameters.epochs, parameters.channelNames, parameters.fold = 7, "T1, T2", "3"
    parameters.caseVolume, parameters.caseLabels = volume, labels
    parameters.workspace = Path("/data/autosegnet")
    a_scene.SetSaveToXMLString(1)
    a_scene.Commit()
    xml = a_scene.GetSceneXMLString()

    reloaded = slicer.vtkMRMLScene()
    reloaded.SetLoadFromXMLString(1)
    reloaded.SetSceneXMLString(xml)
    reloaded.Import()
    slicer.mrmlScene = reloaded
    again = module.AutoSegNetLogic().getParameterNode()
    assert (again.epochs, again.channelNames, again.fold, again.workspace) == (7, "T1, T2", "3",
                                                                              Path("/data/autosegnet"))
    assert again.caseVolume.GetName() == "CT" and again.caseLabels.GetName() == "labels"
    assert again.caseLabels.IsA("vtkMRMLLabelMapVolumeNode")
    reloaded.Clear(1)


def test_settings_are_read_from_the_parameter_node(logic):
    parameters = logic.getParameterNode()
    parameters.channelNames = "T1, T2"
    assert logic.datasetSettings(parameters).channel_names == ("T1", "T2")
    assert logic.trainingSettings(parameters, epochs=3).epochs == 3


def test_the_workflow_exports_and_verifies_through_the_timer_callback(workflow, a_scene, a_workspace):
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"p{index}", seed=index)
        workflow.training_set().add_case([volume], segmentation)
    dataset = DatasetSettings(a_workspace, 21, "Logic", ("CT",))
    job = workflow.start_export(dataset)
    assert job.in_process, "staging runs in Slicer's process, step by step"
    longest = poll_like_the_timer(workflow, lambda: not job.running)
    assert longest < 0.2, f"a poll kept the GUI thread busy {longest:.3f} s"
    assert job.state.status == "finished", job.state.message
    assert workflow.last_export.written == ["case_0001", "case_0002"]
    assert [c.status for c in workflow.training_set().cases()] == ["exported", "exported"]
    summary = workflow.export_summary(job)
    assert "2 written" in summary and "Dataset check passed: 0 error(s)" in summary
    assert workflow.take_new_segmentation() is None, "a finished export must not change the selected result"
    with pytest.raises(Exception, match="no training cases"):
        workflow.training_set().remove_case(workflow.training_set().cases()[0].volume)
        workflow.training_set().remove_case(workflow.training_set().cases()[0].volume)
        workflow.start_export(dataset)


def test_a_training_cannot_start_while_an_export_is_running(module, workflow, a_scene, a_workspace):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p0")
    workflow.training_set().add_case([volume], segmentation)
    dataset = DatasetSettings(a_workspace, 24, "Busy", ("CT",))
    job = workflow.start_export(dataset)
    settings = module.AutoSegNetLogic.trainingSettings(module.AutoSegNetLogic().getParameterNode())
    with pytest.raises(RuntimeError, match="export job is still running"):
        workflow.start_training(dataset, settings)
    job.kill()
    workflow.poll()
    assert job.state.status == "stopped"


def test_jobs_run_behind_pythonslicer_as_in_slicer(workflow, a_scene, a_workspace, python_slicer):
    volume, segmentation, _ = add_synthetic_case(a_scene, "p0")
    workflow.training_set().add_case([volume], segmentation)
    dataset = DatasetSettings(a_workspace, 23, "Launcher", ("CT",))
    job = workflow.start_export(dataset)
    poll_like_the_timer(workflow, lambda: not job.running)
    assert job.state.status == "finished", job.state.message
    assert job.current.record["command"][0] == str(python_slicer)  # the verify step, behind the launcher


def test_auto_configuration_is_2d_for_single_slice_images(workflow, a_scene):
    volume = add_volume(a_scene, np.zeros((1, 8, 8), np.int16))
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 2:4, 2:4] = 1
    workflow.training_set().add_case([volume], add_segmentation(a_scene, labels, {1: "cell"}, volume))
    assert workflow.resolve_configuration("auto") == "2d"
    assert workflow.resolve_configuration("3d_lowres") == "3d_lowres"


def test_segmenting_with_the_wrong_number_of_channels_is_refused(workflow, a_scene, tmp_path):
    from AutoSegNetLib.models.versions import ModelInfo

    volume, _, _ = add_synthetic_case(a_scene, "target")
    model = ModelInfo(tmp_path, "D", "3d_fullres", ["all"], {1: "a"}, ["T1", "T2"])
    with pytest.raises(ValueError, match="takes 2 channel"):
        workflow.start_segmentation(tmp_path, [volume], model)


def test_missing_dependencies_are_named_before_a_job_starts(module, a_scene, tmp_path, a_workspace):
    from AutoSegNetSceneLib.workflow import Workflow

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\nsurely-not-an-installed-package>=1\n")
    workflow = Workflow(a_scene, requirements)
    dataset = DatasetSettings(a_workspace, 22, "Deps", ("CT",))
    with pytest.raises(RuntimeError, match="surely-not-an-installed-package.*Install dependencies"):
        workflow.start_training(dataset, module.AutoSegNetLogic.trainingSettings(module.AutoSegNetLogic()
                                                                                  .getParameterNode()))
    assert not (a_workspace / "jobs").exists()


def test_a_finished_prediction_is_imported_once_into_the_scene_it_was_started_from(workflow, a_scene, tmp_path):
    volume, job = _finished_prediction_job(a_scene, tmp_path)
    workflow._follow_segmentation(job)
    workflow.jobs["segment"] = job
    poll_like_the_timer(workflow, lambda: not job.running)
    result = workflow.take_new_segmentation()
    assert segment_names(result) == ["ball", "box"] and workflow.take_new_segmentation() is None
    assert not Path(job.meta["prediction"]).exists()


def test_a_prediction_finishing_after_close_scene_is_not_imported_into_the_new_scene(workflow, a_scene, tmp_path):
    volume, job = _finished_prediction_job(a_scene, tmp_path, delay=0.5)
    workflow._follow_segmentation(job)
    workflow.jobs["segment"] = job
    a_scene.Clear(0)  # File > Close scene
    poll_like_the_timer(workflow, lambda: not job.running)
    assert workflow.take_new_segmentation() is None
    assert a_scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 0
    assert "not imported: the volume it segments is no longer in the scene" in job.state.message
    assert Path(job.meta["prediction"]).is_dir(), "the prediction files stay for the user"


def test_a_segment_job_re_attached_after_a_restart_imports_its_result(module, a_scene, tmp_path):
    from AutoSegNetSceneLib.workflow import Workflow

    volume, job = _finished_prediction_job(a_scene, tmp_path, delay=0.3)
    dataset = DatasetSettings(tmp_path / "workspace", 41, "Restart", ("CT",))
    restarted = Workflow(a_scene)  # a new Slicer session over the reloaded scene
    [again] = restarted.reattach(dataset)
    poll_like_the_timer(restarted, lambda: not again.running)
    assert segment_names(restarted.take_new_segmentation()) == ["ball", "box"]


def test_stop_on_a_training_found_through_its_status_file_asks_the_fold_to_stop(workflow, a_workspace):
    fold = a_workspace / "results" / "Dataset051_S" / "AutoSegNet__plans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    (fold / "status.json").write_text('{"event": "epoch", "epoch": 1, "epochs": 5, "time": 1}')
    [job] = workflow.reattach(DatasetSettings(a_workspace, 51, "S", ("CT",)))
    assert workflow.jobs["train"] is job and job.running
    workflow.stop("train")
    assert (fold / "stop").is_file()


def test_chart_nodes_are_created_only_once_the_chart_is_opened(workflow, a_scene, tmp_path):
    job = EngineJob.start_command([sys.executable, FAKE, "epochs", "2", "0.05"], tmp_path / "jobs", "train")
    workflow.jobs["train"] = job
    poll_like_the_timer(workflow, lambda: not job.running, chart=True)
    assert a_scene.GetNodesByClass("vtkMRMLPlotChartNode").GetNumberOfItems() == 0
    chart = workflow.update_chart(open_chart=True)
    assert chart.GetNumberOfPlotSeriesNodes() > 0
    assert a_scene.GetNodesByClass("vtkMRMLTableNode").GetItemAsObject(0).GetNumberOfRows() == 2


def test_a_new_workflow_re_attaches_to_a_running_training_and_saves_its_version(workflow, a_workspace):
    dataset = DatasetSettings(a_workspace, 31, "Reattach", ("CT",))
    make_model(a_workspace / "results" / dataset.folder_name / "AutoSegNet__plans__3d_fullres")
    meta = {"dataset": dataset.folder_name, "configuration": "3d_fullres", "workspace": str(a_workspace),
            "step": "train"}
    started = EngineJob.start_command([sys.executable, FAKE, "epochs", "2", "0.3"], a_workspace / "jobs", "train",
                                      meta=meta)
    [job] = workflow.reattach(dataset)  # as after restarting Slicer
    assert workflow.jobs["train"] is job and job.running
    poll_like_the_timer(workflow, lambda: not job.running)
    started.wait(timeout=10)
    assert job.state.status == "finished" and len(job.state.history) == 2
    assert [m.version for m in workflow.models(a_workspace) if m.version] == ["v001"]


def test_self_test_export_part_passes_on_the_real_layer(module, a_scene):
    test = module.AutoSegNetTest("test_training_set_export")
    test.setUp()
    test.test_training_set_export()


def test_the_panel_part_of_the_self_test_skips_outside_the_application(module, a_scene):
    import unittest

    test = module.AutoSegNetTest("test_panel_opens_and_binds_parameters")
    with pytest.raises(unittest.SkipTest, match="needs the Slicer application"):
        test.test_panel_opens_and_binds_parameters()


@pytest.mark.slow
def test_the_whole_self_test_passes_on_the_real_layer(module, a_scene, python_slicer):
    """Train, stop, resume, segment, add the corrected case, retrain: ``slicer.selfTests['AutoSegNet']``, with
    every engine job behind a ``PythonSlicer`` launcher that forwards no signal."""
    reason = heavy_parts_missing()
    if reason:
        pytest.skip(reason)
    slicer.selfTests["AutoSegNet"]()  # exactly what the GitHub workflow runs inside Slicer


# ----- helpers -----------------------------------------------------------------------------------------------
def poll_like_the_timer(workflow, done, timeout: float = 60.0, chart: bool = False) -> float:
    """What the panel's timer does (faster here): ``workflow.poll()`` and the chart refresh; returns the longest
    time one call kept this (the GUI) thread busy, in seconds."""
    deadline = time.monotonic() + timeout
    longest = 0.0
    while not done():
        started = time.perf_counter()
        workflow.poll()
        if chart:
            workflow.update_chart()
        longest = max(longest, time.perf_counter() - started)
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return longest


def _finished_prediction_job(scene, tmp_path, delay: float = 0.0):
    """A segment job whose engine (a stand-in) wrote a real prediction of ``target`` before it ends."""
    from AutoSegNetLib.imageio import io_for

    volume, _, labels = add_synthetic_case(scene, "target")
    model = make_model(tmp_path / "model")
    folders = PredictionFolders(tmp_path / "workspace" / "jobs" / "prediction-1")
    [path] = write_prediction_input([volume], folders)
    geometry = io_for(path).read_images([path])[1]
    folders.output.mkdir(parents=True, exist_ok=True)
    io_for(path).write_seg(labels, folders.segmentation, geometry)
    meta = {"model": str(model), "prediction": str(folders.root), "volume": volume.GetID(), "output": None}
    command = [sys.executable, FAKE, "epochs", "1", str(delay)]
    return volume, EngineJob.start_command(command, tmp_path / "workspace" / "jobs", "segment", meta=meta)
