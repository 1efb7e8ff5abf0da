"""The body of the module's self-test (``AutoSegNetTest``), shared by real Slicer and the CI run on Slicer's
Python layer.

Each function takes the running ``unittest.TestCase`` (for assertions and skips), the module's
:class:`~AutoSegNetSceneLib.workflow.Workflow` and an empty workspace folder. Jobs are followed only through
``Workflow.poll`` -- the function the widget's timer calls -- never through a blocking ``wait``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import slicer

from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case

TRAIN_TIMEOUT_S = 900
PREDICT_TIMEOUT_S = 300
TIMER_INTERVAL_S = 0.1
TINY_TRAINING = ("--val-iterations", "1", "--batch-size", "2", "--num-workers", "0", "--warmup-epochs", "0")


def heavy_parts_missing() -> str | None:
    """Why the training/segmenting part cannot run here (e.g. an extension build machine without torch)."""
    missing = [m for m in ("torch", "SimpleITK", "scipy", "batchgenerators") if importlib.util.find_spec(m) is None]
    if missing:
        return f"the engine's packages are not installed ({', '.join(missing)}); skipping training and segmenting"
    return None


def poll_until(workflow, done, timeout_s: float, what: str) -> None:
    """Call ``workflow.poll()`` every ``TIMER_INTERVAL_S`` like the widget's timer until ``done()``."""
    deadline = time.monotonic() + timeout_s
    app = getattr(slicer, "app", None)
    while not done():
        workflow.poll()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s} s")
        if hasattr(app, "processEvents"):
            app.processEvents()
        time.sleep(TIMER_INTERVAL_S)


def check_panel(test) -> None:
    """Open the module panel (selected in the main window when there is one, as a user would), set a parameter
    through its widget and see it in the parameter node; run the timer callback once. Needs the application."""
    if not hasattr(slicer, "modules"):
        test.skipTest("the module panel needs the Slicer application (Qt widgets)")
    if slicer.util.mainWindow() is not None:
        slicer.util.selectModule("AutoSegNet")
    widget = slicer.util.getModuleWidget("AutoSegNet")
    widget.enter()
    widget.ui.epochsSpinBox.value = 7
    test.assertEqual(widget.logic.getParameterNode().epochs, 7)
    widget.panel.onTimer()  # the timer callback runs with no job at all


def check_training_set_export(test, workflow, workspace: Path) -> None:
    """Add a synthetic case, export it, and compare the written files with the nodes voxel for voxel."""
    from AutoSegNetLib.dataset import RawDataset

    volume, segmentation, labels = add_synthetic_case(workflow.scene, "selftest volume")
    case = workflow.training_set().add_case([volume], segmentation)
    dataset = DatasetSettings(workspace, 990, "SelfTest", ("CT",))
    report = workflow.export(dataset)
    test.assertEqual(report.written, [case.name])
    raw = RawDataset.open(dataset.raw_folder)
    test.assertEqual(raw.dataset_json.labels, {"background": 0, "ball": 1, "box": 2})
    image, seg, geometry = raw.read_case(raw.training_cases()[0])
    test.assertTrue(np.array_equal(image[0], volumes.volume_array(volume)))
    test.assertTrue(np.array_equal(seg, labels))
    test.assertEqual(geometry.differences(volumes.volume_geometry(volume)), [])
    test.assertEqual(workflow.export(dataset).unchanged, [case.name])


def check_train_segment_correct(test, workflow, workspace: Path) -> None:
    """Train a tiny model on the CPU, stop it after its first epoch, resume it to the end, segment a volume with
    it, add the result as a corrected case and fine-tune into the next version; all through ``poll``."""
    reason = heavy_parts_missing()
    if reason:
        test.skipTest(reason)
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(workflow.scene, f"selftest case {index}", seed=index)
        workflow.training_set().add_case([volume], segmentation)
    dataset = DatasetSettings(workspace, 991, "SelfTestTrain", ("CT",))
    # 30 short epochs (about 0.2 s each on a CPU): long enough for the stop to land before the end
    training = TrainingSettings(configuration="3d_fullres", fold="all", epochs=30, iterations_per_epoch=2,
                                device="cpu", extra_args=TINY_TRAINING)
    job = workflow.start_training(dataset, training)
    poll_until(workflow, lambda: job.state.history or not job.running, TRAIN_TIMEOUT_S, "first epoch")
    workflow.stop("train")
    poll_until(workflow, lambda: not job.running, TRAIN_TIMEOUT_S, "stopping the training")
    test.assertEqual(job.state.status, "stopped", f"training {job.state.status}: {job.state.message}")
    fold = dataset.workspace.results / dataset.folder_name
    test.assertTrue(list(fold.glob("*/fold_all/checkpoint_latest.pth")), "a stop must leave checkpoint_latest")

    job = workflow.start_training(dataset, training, resume=True)
    poll_until(workflow, lambda: not job.running, TRAIN_TIMEOUT_S, "resumed training")
    test.assertEqual(job.state.status, "finished", f"training {job.state.status}: {job.state.message}")
    test.assertGreater(job.state.history[0]["epoch"], 1, "the resumed training must continue, not restart")
    models = [m for m in workflow.models(workspace) if m.version]
    test.assertEqual(len(models), 1, "training should leave exactly one model version")
    model = models[0]
    test.assertEqual(sorted(model.labels.values()), ["ball", "box"])

    target, _, _ = add_synthetic_case(workflow.scene, "selftest target", seed=7)
    job = workflow.start_segmentation(workspace, [target], model, fast_preview=True)
    poll_until(workflow, lambda: not job.running, PREDICT_TIMEOUT_S, "segmentation")
    test.assertEqual(job.state.status, "finished", f"segmentation {job.state.status}: {job.state.message}")
    result = workflow.take_new_segmentation()
    test.assertIsNotNone(result)
    _check_segmentation_on_grid(test, result, target)

    case = workflow.training_set().add_case([target], result, corrected=True)
    test.assertEqual(case.status, "corrected")
    test.assertEqual(len(workflow.training_set().cases()), 3)
    job = workflow.start_retraining(dataset, training, model)
    poll_until(workflow, lambda: not job.running, TRAIN_TIMEOUT_S, "retraining")
    test.assertEqual(job.state.status, "finished", f"retraining {job.state.status}: {job.state.message}")
    test.assertEqual([m.version for m in workflow.models(workspace) if m.version], ["v001", "v002"])


def _check_segmentation_on_grid(test, result, volume) -> None:
    """Segments named from the model, each on the volume's voxel grid."""
    segmentation = result.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    test.assertEqual(names, ["ball", "box"])
    for index in range(segmentation.GetNumberOfSegments()):
        image = result.GetBinaryLabelmapInternalRepresentation(segmentation.GetNthSegmentID(index))
        matrix = volumes.vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        test.assertTrue(volumes.same_lattice(volumes.ijk_to_ras(volume), volumes.array_from_vtk_matrix(matrix)))
