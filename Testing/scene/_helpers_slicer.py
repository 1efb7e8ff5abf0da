"""Small builders for the scene-glue tests (real MRML nodes from slicer-core)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import slicer
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.import_prediction import import_segmentation

from AutoSegNetLib.models import versions

# (name, IJK-to-RAS) placements the geometry tests run over.
PLACEMENTS = {
    "identity": np.eye(4),
    "anisotropic_shifted": np.array([[0.7, 0, 0, -20.0], [0, 0.7, 0, 13.5], [0, 0, 3.0, 100.0], [0, 0, 0, 1]]),
    "axial_LPS_like_DICOM": np.array([[-0.5, 0, 0, 90.0], [0, -0.5, 0, 110.0], [0, 0, 2.0, -40.0], [0, 0, 0, 1]]),
    "permuted_flipped": np.array([[-0.8, 0, 0, 12.0], [0, 0, 2.5, -30.0], [0, 1.0, 0, 45.0], [0, 0, 0, 1]]),
}


def oblique_placement(angle_deg: float = 30.0, spacing=(0.9, 1.1, 2.0), origin=(5.0, -7.0, 11.0)) -> np.ndarray:
    """IJK-to-RAS rotated about S by ``angle_deg`` (a non-axis-aligned grid)."""
    a = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


PLACEMENTS["oblique"] = oblique_placement()


def add_volume(scene, array: np.ndarray, ijk_to_ras: np.ndarray | None = None, name: str = "volume",
               class_name: str = "vtkMRMLScalarVolumeNode"):
    """A volume node with a ``(Z, Y, X)`` array placed by ``ijk_to_ras`` (identity by default)."""
    node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(volumes.vtk_matrix(np.eye(4) if ijk_to_ras is None else ijk_to_ras))
    return node


def add_segmentation(scene, labels: np.ndarray, names: dict[int, str], reference, name: str = "segmentation"):
    """A segmentation node whose segment ``names[v]`` is where ``labels == v`` (on ``reference``'s grid)."""
    return import_segmentation(scene, labels, names, reference, name)


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def node_summary(scene) -> list[str]:
    """Class and name of every node, to check that nothing temporary is left behind."""
    return [f"{scene.GetNthNode(i).GetClassName()}:{scene.GetNthNode(i).GetName()}"
            for i in range(scene.GetNumberOfNodes())]


DATASET_JSON = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "ball": 1, "box": 2}, "numTraining": 2,
                "file_ending": ".nii.gz"}


def make_model(folder: Path, folds=("all",), dice=0.8) -> Path:
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "dataset.json").write_text(json.dumps(DATASET_JSON))
    for fold in folds:
        (folder / f"fold_{fold}" / "validation").mkdir(parents=True)
        (folder / f"fold_{fold}" / versions.CHECKPOINT).write_bytes(b"weights " + fold.encode())
        (folder / f"fold_{fold}" / "checkpoint_latest.pth").write_bytes(b"not copied")
        summary = {"foreground_mean": {"Dice": dice}, "mean": {"1": {"Dice": dice}}}
        (folder / f"fold_{fold}" / "validation" / "summary.json").write_text(json.dumps(summary))
    return folder
