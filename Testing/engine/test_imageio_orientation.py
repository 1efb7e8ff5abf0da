"""Exact reorientation by axis swaps and flips: inverse, physical positions, SimpleITK's DICOMOrient as reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_dataset import SHARED_DATA

from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.imageio.orientation import Reorientation, is_valid_orientation
from AutoSegNetLib.imageio.sitk_io import SimpleITKIO

SHARED_NRRD = SHARED_DATA / "pyradiomics_testcases" / "brain1_image.nrrd"


def _all_codes() -> list[str]:
    pairs = (("L", "R"), ("P", "A"), ("S", "I"))
    codes = []
    for order in itertools.permutations(range(3)):
        for signs in itertools.product((0, 1), repeat=3):
            codes.append("".join(pairs[axis][sign] for axis, sign in zip(order, signs)))
    return codes


CODES = _all_codes()


def direction_for(code: str) -> tuple[float, ...]:
    """The axis-aligned direction matrix (row-major, ITK order) whose orientation code is ``code``."""
    matrix = np.zeros((3, 3))
    for column, letter in enumerate(code):
        row = "LPSRAI".index(letter) % 3
        matrix[row, column] = 1.0 if letter in "LPS" else -1.0
    return tuple(matrix.ravel())


def values_by_position(array: np.ndarray, geometry: Geometry) -> dict[tuple, float]:
    """``{physical (x, y, z) rounded to 1e-6 mm: value}`` for every voxel of a ``(Z, Y, X)`` array."""
    index_xyz = np.indices(array.shape).reshape(3, -1).T[:, ::-1].astype(float)
    millimetres = index_xyz * np.asarray(geometry.spacing[::-1])
    points = np.asarray(geometry.origin) + millimetres @ geometry.direction_matrix.T
    return {tuple(p): v for p, v in zip(np.round(points, 6), array.reshape(-1))}


def test_there_are_48_valid_codes_and_invalid_ones_are_refused() -> None:
    assert len(set(CODES)) == 48 and all(is_valid_orientation(c) for c in CODES)
    for bad in ("LLS", "LP", "XYZ", None, "LPSA"):
        assert not is_valid_orientation(bad)
    with pytest.raises(ValueError, match="orientation code"):
        Reorientation.between("LLS", "LPS")


@pytest.mark.parametrize("source", CODES)
def test_every_orientation_reaches_the_target_and_comes_back_exactly(source: str) -> None:
    rng = np.random.default_rng(0)
    array = rng.random((2, 4, 5, 6)).astype(np.float32)  # (C, Z, Y, X): all axes of different length
    geometry = Geometry((3.0, 0.7, 1.1), (10.0, -5.0, 2.5), direction_for(source))
    assert geometry.orientation_code() == source
    for target in ("LPS", "RAS", "ASL"):
        reorientation = Reorientation.between(source, target)
        moved = reorientation.apply(array)
        moved_geometry = reorientation.geometry(geometry, array.shape)
        assert moved_geometry.orientation_code() == target
        np.testing.assert_array_equal(reorientation.invert(moved), array)
        # every voxel keeps its value and its physical position
        assert values_by_position(moved[0], moved_geometry) == values_by_position(array[0], geometry)
    assert Reorientation.between(source, source).is_identity


@pytest.mark.parametrize("target", ["RAS", "LPS", "PSR", "IAL"])
def test_matches_simpleitk_dicomorient_on_a_shared_nrrd(target: str) -> None:
    if not SHARED_NRRD.is_file():
        pytest.skip(f"shared NRRD test case not found at {SHARED_NRRD} (set AUTOSEGNET_SHARED_DATA or put the "
                    "shared data beside the repository)")
    image, geometry = SimpleITKIO().read_images([SHARED_NRRD])
    reference = sitk.DICOMOrient(sitk.ReadImage(str(SHARED_NRRD)), target)
    reorientation = Reorientation.between(geometry.orientation_code(), target)
    moved = reorientation.apply(image)
    moved_geometry = reorientation.geometry(geometry, image.shape)
    np.testing.assert_array_equal(moved[0], sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(moved_geometry.spacing, reference.GetSpacing()[::-1], rtol=1e-6)
    np.testing.assert_allclose(moved_geometry.origin, reference.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(moved_geometry.direction, reference.GetDirection(), atol=1e-6)
