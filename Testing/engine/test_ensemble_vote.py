"""``ensemble --vote hard``: a majority vote of label maps, ties to the lowest tied label value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, io_for
from AutoSegNetLib.inference.ensemble import ensemble_folders, label_map_files, majority_vote
from AutoSegNetLib.inference.outputs import write_segmentation, write_uncertainty

SHAPES = {"3d": (2, 2, 3), "2d": (1, 2, 3), "anisotropic": (3, 1, 2)}


def labels(values: list[int], shape: tuple[int, ...]) -> np.ndarray:
    return np.array(values, dtype=np.uint8).reshape(shape)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_the_value_most_maps_give_wins_each_voxel(shape):
    a = labels([0, 1, 2, 2, 0, 1, 1, 1, 0, 0, 2, 2][: int(np.prod(shape))], shape)
    b = labels([0, 1, 1, 2, 2, 1, 0, 1, 0, 2, 2, 0][: int(np.prod(shape))], shape)
    c = labels([1, 0, 2, 0, 2, 2, 1, 0, 0, 2, 1, 0][: int(np.prod(shape))], shape)
    expected = labels([0, 1, 2, 2, 2, 1, 1, 1, 0, 2, 2, 0][: int(np.prod(shape))], shape)
    np.testing.assert_array_equal(majority_vote([a, b, c]), expected)


def test_a_tie_goes_to_the_lowest_tied_label_whatever_the_order():
    a = labels([0, 1, 3, 2], (1, 1, 4))
    b = labels([1, 2, 2, 3], (1, 1, 4))
    expected = labels([0, 1, 2, 2], (1, 1, 4))
    np.testing.assert_array_equal(majority_vote([a, b]), expected)
    np.testing.assert_array_equal(majority_vote([b, a]), expected)


def test_four_single_votes_and_a_two_against_two_tie_both_go_to_the_lowest_value():
    maps = [labels([5, 1], (1, 1, 2)), labels([4, 1], (1, 1, 2)), labels([3, 2], (1, 1, 2)), labels([9, 2], (1, 1, 2))]
    np.testing.assert_array_equal(majority_vote(maps), labels([3, 1], (1, 1, 2)))


def test_label_values_above_255_come_back_as_uint16():
    maps = [np.array([[[300, 0]]], dtype=np.uint16), np.array([[[300, 7]]], dtype=np.uint16)]
    voted = majority_vote(maps)
    assert voted.dtype == np.uint16
    np.testing.assert_array_equal(voted, [[[300, 0]]])


def test_negative_label_values_are_refused():
    with pytest.raises(AutoSegNetError, match="negative"):
        majority_vote([np.array([[[-1, 0]]]), np.array([[[0, 0]]])])


GEOMETRY = Geometry((2.0, 1.0, 1.5), (5.0, -3.0, 12.5), (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def prediction_folder(folder: Path, cases: dict[str, np.ndarray], geometry: Geometry = GEOMETRY,
                      ending: str = ".nii.gz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for case, segmentation in cases.items():
        write_segmentation(folder, case, segmentation, geometry, ending)
    return folder


def test_hard_vote_of_folders_writes_the_majority_in_the_first_folders_geometry(tmp_path):
    a = prediction_folder(tmp_path / "a", {"x": labels([0, 1, 2, 2], (1, 2, 2)), "y": labels([1, 1, 1, 1], (1, 2, 2))})
    b = prediction_folder(tmp_path / "b", {"x": labels([0, 2, 2, 1], (1, 2, 2)), "y": labels([0, 0, 1, 1], (1, 2, 2))})
    c = prediction_folder(tmp_path / "c", {"x": labels([1, 1, 0, 1], (1, 2, 2)), "y": labels([0, 1, 0, 1], (1, 2, 2))})
    written = ensemble_folders([a, b, c], tmp_path / "out", vote="hard")
    assert [p.name for p in written] == ["x.nii.gz", "y.nii.gz"]
    x, geometry = io_for(".nii.gz").read_seg(tmp_path / "out" / "x.nii.gz")
    np.testing.assert_array_equal(x, labels([0, 1, 2, 1], (1, 2, 2)))
    np.testing.assert_array_equal(io_for(".nii.gz").read_seg(written[1])[0], labels([0, 1, 1, 1], (1, 2, 2)))
    assert GEOMETRY.differences(geometry) == []


def test_uncertainty_maps_and_probability_files_are_not_voted_on(tmp_path):
    a = prediction_folder(tmp_path / "a", {"x": labels([1, 0], (1, 1, 2))})
    write_uncertainty(a, "x", np.zeros((1, 1, 2), dtype=np.float32), GEOMETRY, ".nii.gz")
    (a / "x.json").write_text("{}")
    files, ending = label_map_files(a)
    assert ending == ".nii.gz" and list(files) == ["x"]


def test_natural_image_label_maps_are_voted_as_png(tmp_path):
    flat = Geometry((999.0, 1.0, 1.0), image_dim=2)
    folders = [prediction_folder(tmp_path / name, {"img": labels(v, (1, 1, 3))}, flat, ".png")
               for name, v in (("a", [0, 1, 2]), ("b", [0, 1, 1]), ("c", [2, 2, 1]))]
    ensemble_folders(folders, tmp_path / "out", vote="hard")
    np.testing.assert_array_equal(io_for(".png").read_seg(tmp_path / "out" / "img.png")[0], [[[0, 1, 1]]])


def test_label_maps_of_different_images_are_refused(tmp_path):
    a = prediction_folder(tmp_path / "a", {"x": labels([1, 0], (1, 1, 2))})
    moved = Geometry((2.0, 1.0, 1.5), (0.0, 0.0, 0.0), GEOMETRY.direction)
    b = prediction_folder(tmp_path / "b", {"x": labels([1, 0], (1, 1, 2))}, moved)
    with pytest.raises(AutoSegNetError, match="geometry"):
        ensemble_folders([a, b], tmp_path / "out", vote="hard")
    c = prediction_folder(tmp_path / "c", {"x": labels([1, 0, 0], (1, 1, 3))})
    with pytest.raises(AutoSegNetError, match="shape"):
        ensemble_folders([a, c], tmp_path / "out", vote="hard")


def test_a_case_missing_from_one_folder_is_named(tmp_path):
    a = prediction_folder(tmp_path / "a", {"x": labels([1], (1, 1, 1)), "y": labels([1], (1, 1, 1))})
    b = prediction_folder(tmp_path / "b", {"x": labels([1], (1, 1, 1))})
    with pytest.raises(AutoSegNetError, match=r"b has no label maps for cases \['y'\]"):
        ensemble_folders([a, b], tmp_path / "out", vote="hard")


def test_hard_vote_has_no_probabilities_to_save(tmp_path):
    a = prediction_folder(tmp_path / "a", {"x": labels([1], (1, 1, 1))})
    with pytest.raises(AutoSegNetError, match="no probabilities"):
        ensemble_folders([a, a], tmp_path / "out", save_probabilities=True, vote="hard")


def test_cli_ensemble_vote_hard_needs_no_probabilities(tmp_path):
    folders = [prediction_folder(tmp_path / name, {"x": labels(v, (1, 1, 3))})
               for name, v in (("a", [0, 1, 2]), ("b", [0, 2, 2]), ("c", [1, 1, 0]))]
    assert main(["ensemble", "-i", *map(str, folders), "-o", str(tmp_path / "out"), "--vote", "hard"]) == 0
    np.testing.assert_array_equal(io_for(".nii.gz").read_seg(tmp_path / "out" / "x.nii.gz")[0], [[[0, 1, 2]]])
