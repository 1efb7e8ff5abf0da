"""The web UI's trame-free parts on real MRML: the training charts and the segmentation download.

The page itself (trame-slicer) runs in its own environment (``make web-test``); these parts run in the main suite.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from AutoSegNetSceneLib import volumes
from AutoSegNetSceneLib.cases import TrainingSet
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.web.curves import training_charts
from AutoSegNetLib.web.downloads import image_stem, safe_name, write_segmentation
from AutoSegNetLib.web.forms import number
from AutoSegNetLib.web.overlay import show_overlay

COLUMNS = {"epoch": [1.0, 2.0, 3.0], "train_loss": [1.0, 0.5, 0.25], "val_loss": [1.2, math.nan, 0.4],
           "Dice <ball>": [0.1, 0.5, 0.9]}


def test_two_charts_loss_on_its_range_and_dice_on_zero_to_one():
    loss, dice = training_charts(COLUMNS, width=100, height=50)
    assert (loss["title"], loss["low"], loss["high"]) == ("Loss", 0.25, 1.2)
    assert (dice["title"], dice["low"], dice["high"]) == ("Pseudo-Dice", 0.0, 1.0)
    train = loss["series"][0]["points"].split()
    assert train[0] == "0.0,10.5" and train[-1] == "100.0,50.0"  # epoch 1 at the left, the lowest value at the bottom
    assert len(loss["series"][1]["points"].split()) == 2, "a missing value (NaN) is skipped, not drawn"
    assert dice["series"][0]["points"].split()[-1] == "100.0,5.0"


def test_chart_svg_escapes_label_names():
    dice = training_charts(COLUMNS)[1]
    assert "<title>&lt;ball&gt;</title>" in dice["svg"] and "<ball>" not in dice["svg"]


def test_no_finite_value_no_chart():
    assert training_charts({"epoch": [1.0], "train_loss": [math.nan]}) == []
    assert training_charts({}) == []


def test_segmentation_download_is_the_label_map_on_the_volume_grid(a_scene, tmp_path):
    volume, segmentation, labels = add_synthetic_case(a_scene, "web case")
    for file_format, ending in (("nifti", ".nii.gz"), ("nrrd", ".nrrd")):
        path = write_segmentation(TrainingSet(a_scene), volume, segmentation, tmp_path, file_format)
        assert path == tmp_path / "downloads" / f"web_case_segmentation{ending}"
        image = sitk.ReadImage(str(path))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), labels)  # ball 1, box 2: segment order
        geometry = volumes.volume_geometry(volume)
        np.testing.assert_allclose(image.GetSpacing(), geometry.spacing[::-1], atol=1e-6)  # Geometry: (z, y, x)
        np.testing.assert_allclose(image.GetOrigin(), geometry.origin, atol=1e-5)
        np.testing.assert_allclose(image.GetDirection(), geometry.direction, atol=1e-6)
    assert TrainingSet(a_scene).segment_names(segmentation) == ["ball", "box"]
    assert not list((tmp_path / "downloads").glob(".*")), "no temporary file is left behind"


def test_segmentation_download_refuses_bad_requests(a_scene, tmp_path):
    volume, segmentation, _ = add_synthetic_case(a_scene, "web case", names={1: "ball", 2: "Ball"})
    with pytest.raises(AutoSegNetError, match="Unknown download format"):
        write_segmentation(TrainingSet(a_scene), volume, segmentation, tmp_path, "dicom")
    with pytest.raises(AutoSegNetError, match="must differ"):
        write_segmentation(TrainingSet(a_scene), volume, segmentation, tmp_path, "nifti")
    empty = a_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(AutoSegNetError, match="no segment"):
        write_segmentation(TrainingSet(a_scene), volume, empty, tmp_path, "nifti")


def test_safe_file_names():
    assert safe_name("CT 1 (arterial)/x") == "CT_1_arterial_x"
    assert image_stem("hippocampus_003.nii.gz") == "hippocampus_003" and image_stem("a.NRRD") == "a"
    assert image_stem(".nii.gz") == ".nii.gz" and image_stem("scan") == "scan"
    assert safe_name("...") == "segmentation"


def test_uncertainty_overlay_goes_over_the_image_in_every_slice_view_and_comes_off(a_scene):
    volume, _, _ = add_synthetic_case(a_scene, "web case")
    composites = [a_scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode") for _ in range(3)]
    assert show_overlay(a_scene, volume, opacity=0.3)
    assert all(c.GetForegroundVolumeID() == volume.GetID() and c.GetForegroundOpacity() == 0.3 for c in composites)
    assert not show_overlay(a_scene, None)
    assert all(c.GetForegroundVolumeID() is None for c in composites)


def test_form_numbers_blank_required_and_wrong():
    assert number(" 12 ", "Epochs", int, required=True) == 12 and number("", "Iterations", int) is None
    assert number("", "Time budget", float, 0.0) == 0.0 and number("2.5", "Time budget", float) == 2.5
    with pytest.raises(AutoSegNetError, match="Epochs: enter a value"):
        number("", "Epochs", int, required=True)
    with pytest.raises(AutoSegNetError, match="Epochs must be a whole number, got '1.5'"):
        number("1.5", "Epochs", int)
    with pytest.raises(AutoSegNetError, match="Time budget must be a number, got 'soon'"):
        number("soon", "Time budget", float)
