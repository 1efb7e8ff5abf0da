"""Volume nodes <-> NumPy arrays and the engine's :class:`~AutoSegNetLib.imageio.Geometry`.

Slicer stores a volume's placement as an IJK-to-RAS matrix; files and the engine use ITK's LPS convention.
The two differ by the sign of the first two physical axes: ``LPS = diag(-1, -1, 1) @ RAS``.

Axis order: ``slicer.util.arrayFromVolume`` returns voxels as ``(K, J, I)``, which is the engine's
``(Z, Y, X)`` order with ITK's index ``(x, y, z) = (I, J, K)``. So arrays pass through unchanged; only the
geometry is converted: ``Geometry.spacing`` is ``(sK, sJ, sI)`` in mm, ``origin`` is the LPS position (mm) of
voxel (0, 0, 0) and ``direction`` holds the LPS unit vectors of the I, J, K axes as the columns of a
row-major 3x3 matrix (exactly what SimpleITK's ``GetDirection`` reports).
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras(volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The volume's IJK-to-RAS matrix as a (4, 4) array (mm)."""
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return array_from_vtk_matrix(matrix)


def array_from_vtk_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A (4, 4) array from a ``vtkMatrix4x4``."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A ``vtkMatrix4x4`` from a (4, 4) array."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def geometry_from_ijk_to_ras(matrix: np.ndarray) -> Geometry:
    """Engine geometry (LPS) of a voxel grid placed by a (4, 4) IJK-to-RAS matrix."""
    linear = RAS_TO_LPS @ np.asarray(matrix, dtype=float)[:3, :3]
    spacing_ijk = np.linalg.norm(linear, axis=0)
    if np.any(spacing_ijk <= 0):
        raise AutoSegNetError(f"The IJK-to-RAS matrix has a zero spacing: {matrix.tolist()}.")
    direction = linear / spacing_ijk
    origin = RAS_TO_LPS @ np.asarray(matrix, dtype=float)[:3, 3]
    return Geometry(tuple(spacing_ijk[::-1]), tuple(origin), tuple(direction.ravel()))


def ijk_to_ras_from_geometry(geometry: Geometry) -> np.ndarray:
    """The (4, 4) IJK-to-RAS matrix of an engine geometry (inverse of :func:`geometry_from_ijk_to_ras`)."""
    spacing_ijk = np.asarray(geometry.spacing[::-1], dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = RAS_TO_LPS @ geometry.direction_matrix @ np.diag(spacing_ijk)
    matrix[:3, 3] = RAS_TO_LPS @ np.asarray(geometry.origin, dtype=float)
    return matrix


def volume_geometry(volume: slicer.vtkMRMLVolumeNode) -> Geometry:
    """Engine geometry of a volume node."""
    return geometry_from_ijk_to_ras(ijk_to_ras(volume))


def volume_array(volume: slicer.vtkMRMLScalarVolumeNode) -> np.ndarray:
    """The voxels of a scalar volume as a ``(Z, Y, X)`` array (a view: copy before changing it)."""
    image = volume.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise AutoSegNetError(f"Volume {volume.GetName()!r} has no voxels (is it still loading?).")
    if image.GetNumberOfScalarComponents() != 1:
        raise AutoSegNetError(
            f"Volume {volume.GetName()!r} has {image.GetNumberOfScalarComponents()} components per voxel; "
            "AutoSegNet takes one scalar volume per channel. Split it (Vector to Scalar Volume module) and add "
            "the channels as separate volumes."
        )
    return slicer.util.arrayFromVolume(volume)


def set_volume_array(volume: slicer.vtkMRMLVolumeNode, array: np.ndarray, geometry: Geometry) -> None:
    """Fill a volume node with a ``(Z, Y, X)`` array placed at an engine geometry."""
    slicer.util.updateVolumeFromArray(volume, np.ascontiguousarray(array))
    volume.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras_from_geometry(geometry)))


def copy_placement(source: slicer.vtkMRMLVolumeNode, target: slicer.vtkMRMLVolumeNode) -> None:
    """Give ``target`` the IJK-to-RAS matrix of ``source``."""
    matrix = vtk.vtkMatrix4x4()
    source.GetIJKToRASMatrix(matrix)
    target.SetIJKToRASMatrix(matrix)


def same_lattice(a: np.ndarray, b: np.ndarray, tolerance: float = 1e-3) -> bool:
    """True when two IJK-to-RAS matrices describe the same voxel grid up to a whole-voxel shift.

    Segmentations often store a cropped extent of the volume's grid; that is not a different geometry.
    ``tolerance`` is relative to the voxel size.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if not np.allclose(a[:3, :3], b[:3, :3], atol=tolerance * float(spacing.min())):
        return False
    shift = np.linalg.solve(a[:3, :3], b[:3, 3] - a[:3, 3])  # offset in voxels of grid a
    return bool(np.allclose(shift, np.round(shift), atol=tolerance))


def dimensions_zyx(volume: slicer.vtkMRMLVolumeNode) -> tuple[int, int, int]:
    """Array shape ``(Z, Y, X)`` of a volume node."""
    dims = volume.GetImageData().GetDimensions()
    return int(dims[2]), int(dims[1]), int(dims[0])


def require_untransformed(node: slicer.vtkMRMLNode) -> None:
    """Refuse nodes under a transform: exported files would not carry it."""
    if node.GetParentTransformNode() is not None:
        raise AutoSegNetError(
            f"{node.GetName()!r} is under the transform {node.GetParentTransformNode().GetName()!r}. Harden the "
            "transform (Data module: right-click > Harden transform) before using it with AutoSegNet."
        )
