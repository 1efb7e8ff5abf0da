"""The body of the module's self-test (``AutoSegNetTest``), shared by real Slicer and the slicer-core CI run.

Each function takes the running ``unittest.TestCase`` (for assertions and skips), a module logic and an
empty workspace folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
from AutoSegNetSceneLib.synthetic import add_synthetic_case

TRAIN_TIMEOUT_S = 900
PREDICT_TIMEOUT_S = 300
TINY_TRAINING = ("--val-iterations", "1", "--batch-size", "2", "--num-workers", "0", "--warmup-epochs", "0")


def engine_commands_missing(*names: str) -> list[str]:
    """The engine commands (``train``, ``predict``, ...) whose CLI module does not exist yet."""
    return [n for n in names if importlib.util.find_spec(f"AutoSegNetLib.cli.{n.replace('-', '_')}") is None]


def check_training_set_export(test, logic, workspace: Path) -> None:
    """Add a synthetic case, export it, and compare the written files with the nodes voxel for voxel."""
    from AutoSegNetLib.dataset import RawDataset

    volume, segmentation, labels = add_synthetic_case(logic.scene, "selftest volume")
    case = logic.addTrainingCase([volume], segmentation)
    dataset = DatasetSettings(workspace, 990, "SelfTest", ("CT",))
    report = logic.exportTrainingSet(dataset)
    test.assertEqual(report.written, [case.name])
    raw = RawDataset.open(dataset.raw_folder)
    test.assertEqual(raw.dataset_json.labels, {"background": 0, "ball": 1, "box": 2})
    image, seg, geometry = raw.read_case(raw.training_cases()[0])
    test.assertTrue(np.array_equal(image[0], volumes.volume_array(volume)))
    test.assertTrue(np.array_equal(seg, labels))
    test.assertEqual(geometry.differences(volumes.volume_geometry(volume)), [])
    test.assertEqual(logic.exportTrainingSet(dataset).unchanged, [case.name])


def check_train_segment_correct(test, logic, workspace: Path) -> None:
    """Train a tiny model on CPU for a few iterations, segment a volume with it, add the result as a case and
    fine-tune from the model into the next version."""
    missing = engine_commands_missing("plan-and-preprocess", "preprocess", "train", "predict")
    if missing:
        test.skipTest(f"engine command(s) not built yet: {', '.join(missing)}")
    for index in range(2):
        volume, segmentation, _ = add_synthetic_case(logic.scene, f"selftest case {index}", seed=index)
        logic.addTrainingCase([volume], segmentation)
    dataset = DatasetSettings(workspace, 991, "SelfTestTrain", ("CT",))
    training = TrainingSettings(configuration="3d_fullres", fold="all", epochs=1, iterations_per_epoch=2, device="cpu",
                                extra_args=TINY_TRAINING)
    job = logic.startTraining(dataset, training)
    state = job.wait(timeout=TRAIN_TIMEOUT_S)
    test.assertEqual(state.status, "finished", f"training {state.status}: {state.message}")
    models = [m for m in logic.models(workspace) if m.version]
    test.assertEqual(len(models), 1, "training should leave exactly one model version")
    model = models[0]
    test.assertEqual(sorted(model.labels.values()), ["ball", "box"])

    target, _, _ = add_synthetic_case(logic.scene, "selftest target", seed=7)
    job = logic.startSegmentation(workspace, [target], model, fastPreview=True)
    state = job.wait(timeout=PREDICT_TIMEOUT_S)
    test.assertEqual(state.status, "finished", f"segmentation {state.status}: {state.message}")
    result = logic.lastSegmentation
    test.assertIsNotNone(result)
    segmentation = result.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    test.assertEqual(names, ["ball", "box"])
    for index in range(segmentation.GetNumberOfSegments()):
        image = result.GetBinaryLabelmapInternalRepresentation(segmentation.GetNthSegmentID(index))
        matrix = volumes.vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        test.assertTrue(volumes.same_lattice(volumes.ijk_to_ras(target), volumes.array_from_vtk_matrix(matrix)))

    case = logic.addTrainingCase([target], result, corrected=True)
    test.assertEqual(case.status, "corrected")
    test.assertEqual(len(logic.trainingSet().cases()), 3)

    state = logic.startRetraining(dataset, training, model).wait(timeout=TRAIN_TIMEOUT_S)
    test.assertEqual(state.status, "finished", f"retraining {state.status}: {state.message}")
    versions = [m.version for m in logic.models(workspace) if m.version]
    test.assertEqual(versions, ["v001", "v002"])
