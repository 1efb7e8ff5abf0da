"""The scripted module under slicer-core: loads light, the Logic works without the widget, the self-test runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import slicer
from AutoSegNetSceneLib.models import ModelInfo
from AutoSegNetSceneLib.segment import PredictionFolders, write_prediction_input
from AutoSegNetSceneLib.selftest import engine_commands_missing
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from Testing.scene import slicer_standin
from Testing.scene._helpers_slicer import add_segmentation, add_volume, make_model, segment_names

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "AutoSegNetLib", "SimpleITK", "psutil", "scipy", "batchgenerators")


@pytest.fixture
def module():
    return slicer_standin.load_module()


@pytest.fixture
def logic(module, a_scene):
    return module.AutoSegNetLogic()


def test_loading_the_module_imports_neither_torch_nor_the_engine():
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if not p.endswith('Testing')]\n"
        "from Testing.scene import slicer_standin; slicer_standin.load_module()\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_module_describes_itself_and_registers_its_self_test(module):
    assert "AutoSegNet" in slicer.selfTests
    parent = type("Parent", (), {"path": str(REPO_ROOT / "AutoSegNet" / "AutoSegNet.py")})()
    module.AutoSegNet(parent)
    assert parent.title == "AutoSegNet" and parent.categories == ["Segmentation"]


def test_the_parameter_node_has_defaults_and_lives_in_the_scene(logic, a_scene):
    parameters = logic.getParameterNode()
    assert (parameters.datasetId, parameters.configuration, parameters.fold, parameters.fastPreview) == (
        501, "auto", "all", True)
    parameters.epochs = 7
    parameters.channelNames = "T1, T2"
    again = logic.getParameterNode()
    assert again.epochs == 7 and a_scene.GetNodesByClass("vtkMRMLScriptedModuleNode").GetNumberOfItems() == 1
    assert logic.datasetSettings(again).channel_names == ("T1", "T2")
    assert logic.trainingSettings(again, epochs=3).epochs == 3


def test_the_logic_adds_exports_and_verifies_without_a_widget(logic, a_scene, a_workspace):
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(a_scene, f"p{index}", seed=index)
        logic.addTrainingCase([volume], segmentation)
    dataset = DatasetSettings(a_workspace, 21, "Logic", ("CT",))
    assert logic.exportTrainingSet(dataset).written == ["case_0001", "case_0002"]
    job = logic.startVerify(dataset)
    while not logic.pollJobs():
        pass
    assert job.state.status == "finished", job.log_tail()
    assert logic.verifySummary(job).startswith("Dataset check passed: 0 error(s)")


def test_auto_configuration_is_2d_for_single_slice_images(logic, a_scene):
    volume = add_volume(a_scene, np.zeros((1, 8, 8), np.int16))
    labels = np.zeros((1, 8, 8), np.uint8)
    labels[0, 2:4, 2:4] = 1
    logic.addTrainingCase([volume], add_segmentation(a_scene, labels, {1: "cell"}, volume))
    assert logic.resolveConfiguration("auto") == "2d"
    assert logic.resolveConfiguration("3d_lowres") == "3d_lowres"


def test_a_finished_prediction_is_imported_as_a_segmentation_of_the_input(logic, a_scene, tmp_path):
    from AutoSegNetLib.imageio import io_for

    volume, _, labels = add_synthetic_case(a_scene, "target")
    folders = PredictionFolders(tmp_path / "prediction")
    [path] = write_prediction_input([volume], folders)
    geometry = io_for(path).read_images([path])[1]
    io_for(path).write_seg(labels, folders.segmentation, geometry)
    model = ModelInfo(tmp_path, "D", "3d_fullres", ["all"], {1: "ball", 2: "box"}, ["CT"])
    finished = type("Job", (), {"state": type("S", (), {"status": "finished", "message": ""})()})()
    logic._importSegmentation(finished, folders, volume, model, None)
    assert segment_names(logic.lastSegmentation) == ["ball", "box"]
    assert not folders.root.exists()


def test_segmenting_with_the_wrong_number_of_channels_is_refused(logic, a_scene, tmp_path):
    volume, _, _ = add_synthetic_case(a_scene, "target")
    model = ModelInfo(tmp_path, "D", "3d_fullres", ["all"], {1: "a"}, ["T1", "T2"])
    with pytest.raises(ValueError, match="takes 2 channel"):
        logic.startSegmentation(tmp_path, [volume], model)


def test_self_test_export_part_passes_under_slicer_core(module, a_scene):
    test = module.AutoSegNetTest("test_training_set_export")
    test.setUp()
    test.test_training_set_export()


@pytest.mark.slow
def test_the_whole_self_test_passes_under_slicer_core(module, a_scene):
    """Train a tiny model on CPU, segment, add the corrected case, retrain: ``slicer.selfTests['AutoSegNet']``."""
    missing = engine_commands_missing("plan-and-preprocess", "preprocess", "train", "predict")
    if missing:
        pytest.skip(f"engine command(s) not built yet: {', '.join(missing)}")
    slicer.selfTests["AutoSegNet"]()  # exactly what the GitHub workflow runs inside Slicer


def test_a_new_logic_re_attaches_to_a_running_training_and_saves_its_version(logic, a_workspace):
    from AutoSegNetSceneLib.jobs import EngineJob

    dataset = DatasetSettings(a_workspace, 31, "Reattach", ("CT",))
    make_model(a_workspace / "results" / dataset.folder_name / "AutoSegNet__plans__3d_fullres")
    meta = {"dataset": dataset.folder_name, "configuration": "3d_fullres", "workspace": str(a_workspace),
            "step": "train"}
    fake = str(Path(__file__).with_name("fake_engine.py"))
    started = EngineJob.start_command([sys.executable, fake, "epochs", "2", "0.3"], a_workspace / "jobs", "train",
                                      meta=meta)
    [job] = logic.reattachJobs(dataset)  # as after restarting Slicer
    assert logic.jobs["train"] is job and job.running
    while logic.jobs["train"].running:
        logic.pollJobs()
    started.wait(timeout=10)
    assert job.state.status == "finished" and len(job.state.history) == 2
    assert [m.version for m in logic.models(a_workspace) if m.version] == ["v001"]
