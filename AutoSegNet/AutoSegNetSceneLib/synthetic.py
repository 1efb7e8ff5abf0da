"""Small synthetic volumes and segmentations for the self-test and the scene-glue tests.

A noisy volume with a bright ball (label ``ball``) and a darker box (label ``box``), placed with a
non-trivial IJK-to-RAS matrix (anisotropic spacing, axes permuted and flipped, an origin away from 0), so
that any RAS/LPS or axis-order mistake changes the exported files.
"""

from __future__ import annotations

import numpy as np
import slicer

from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.import_prediction import import_segmentation

# IJK -> RAS: I along -R (0.8 mm), J along +S (1.0 mm), K along +A (2.5 mm); origin (12, -30, 45) mm.
DEFAULT_IJK_TO_RAS = np.array([
    [-0.8, 0.0, 0.0, 12.0],
    [0.0, 0.0, 2.5, -30.0],
    [0.0, 1.0, 0.0, 45.0],
    [0.0, 0.0, 0.0, 1.0],
])


def synthetic_arrays(shape: tuple[int, int, int] = (12, 24, 20), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image int16 (Z, Y, X), labels uint8 (Z, Y, X))`` with label 1 = ball, 2 = box."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    centre = np.array(shape) / 2 + rng.uniform(-1.5, 1.5, 3)
    radius = min(shape) / 3.5
    ball = ((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) <= radius ** 2
    box = np.zeros(shape, bool)
    box[1:4, 2:7, 2:6] = True
    labels = np.zeros(shape, np.uint8)
    labels[box] = 2
    labels[ball] = 1
    image = rng.normal(0, 20, shape) + 300 * ball + 120 * box
    return image.astype(np.int16), labels


def add_synthetic_case(scene: slicer.vtkMRMLScene, name: str, seed: int = 0,
                       shape: tuple[int, int, int] = (12, 24, 20), ijk_to_ras: np.ndarray = DEFAULT_IJK_TO_RAS,
                       names: dict[int, str] | None = None):
    """Add a volume and its segmentation to ``scene``; returns ``(volume, segmentation, labels array)``."""
    image, labels = synthetic_arrays(shape, seed)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(volume, image)
    volume.SetIJKToRASMatrix(volumes.vtk_matrix(ijk_to_ras))
    volume.CreateDefaultDisplayNodes()
    segmentation = import_segmentation(scene, labels, names or {1: "ball", 2: "box"}, volume, f"{name} segmentation")
    return volume, segmentation, labels
