"""Volume nodes <-> arrays + Geometry: RAS/LPS and axis order, checked against Slicer's own NRRD writer."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from AutoSegNetSceneLib import volumes

from AutoSegNetLib.imageio import io_for
from Testing.scene._helpers_slicer import PLACEMENTS, add_volume


@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_geometry_matches_what_slicers_nrrd_writer_stores(a_scene, tmp_path, placement):
    node = add_volume(a_scene, np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5), PLACEMENTS[placement])
    storage = a_scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(tmp_path / "slicer.nrrd"))
    assert storage.WriteData(node)
    written = sitk.ReadImage(str(tmp_path / "slicer.nrrd"))
    geometry = volumes.volume_geometry(node)
    assert geometry.spacing == pytest.approx(tuple(reversed(written.GetSpacing())))
    assert geometry.origin == pytest.approx(written.GetOrigin())
    assert geometry.direction == pytest.approx(written.GetDirection(), abs=1e-12)
    assert np.array_equal(sitk.GetArrayFromImage(written), volumes.volume_array(node))


@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_geometry_and_ijk_to_ras_convert_back_exactly(placement):
    matrix = PLACEMENTS[placement]
    back = volumes.ijk_to_ras_from_geometry(volumes.geometry_from_ijk_to_ras(matrix))
    assert back == pytest.approx(matrix, abs=1e-12)


def test_every_voxel_lands_at_the_same_physical_point_in_the_written_file(a_scene, tmp_path):
    node = add_volume(a_scene, np.zeros((3, 4, 5), np.int16), PLACEMENTS["oblique"])
    io_for(".nii.gz").write_image(volumes.volume_array(node), tmp_path / "x.nii.gz", volumes.volume_geometry(node))
    image = sitk.ReadImage(str(tmp_path / "x.nii.gz"))
    ijk_to_ras = volumes.ijk_to_ras(node)
    for ijk in [(0, 0, 0), (4, 3, 2), (1, 2, 1)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        ras = (ijk_to_ras @ [*ijk, 1.0])[:3]
        assert lps == pytest.approx(ras * [-1, -1, 1], abs=1e-4)


def test_set_volume_array_places_voxels_at_the_geometry(a_scene):
    geometry = volumes.geometry_from_ijk_to_ras(PLACEMENTS["axial_LPS_like_DICOM"])
    node = a_scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    array = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    volumes.set_volume_array(node, array, geometry)
    assert np.array_equal(volumes.volume_array(node), array)
    assert volumes.ijk_to_ras(node) == pytest.approx(PLACEMENTS["axial_LPS_like_DICOM"])


@pytest.mark.parametrize(("shift", "same"), [((2, -3, 1), True), ((0.5, 0, 0), False)])
def test_grids_shifted_by_whole_voxels_are_the_same_lattice(shift, same):
    a = PLACEMENTS["oblique"]
    b = a.copy()
    b[:3, 3] = a[:3, 3] + a[:3, :3] @ np.array(shift)
    assert volumes.same_lattice(a, b) is same


def test_a_different_spacing_is_a_different_lattice():
    b = PLACEMENTS["identity"].copy()
    b[0, 0] = 2.0
    assert not volumes.same_lattice(PLACEMENTS["identity"], b)


def test_multi_component_volumes_are_refused_with_advice(a_scene):
    node = a_scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode")
    slicer.util.updateVolumeFromArray(node, np.zeros((2, 3, 4, 3), np.uint8))
    with pytest.raises(Exception, match="one scalar volume per channel"):
        volumes.volume_array(node)


def test_transformed_nodes_are_refused_with_advice(a_scene):
    node = add_volume(a_scene, np.zeros((2, 2, 2), np.int16))
    transform = a_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(Exception, match="Harden the transform"):
        volumes.require_untransformed(node)
