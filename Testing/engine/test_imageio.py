"""Image I/O: lossless round trips on the shared real data, the registry as a whole, Geometry comparisons."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_dataset import shared
from PIL import Image

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import PSEUDO_2D_SPACING, Geometry, io_by_name, io_for, registered_ios
from AutoSegNetLib.imageio.base import NonIntegerLabelError
from AutoSegNetLib.imageio.sitk_io import nifti_non_finite

REAL_IMAGES = [
    ("pyradiomics_testcases", "brain1_image.nrrd"),  # int16, anisotropic 0.78 x 0.78 x 6.5 mm
    ("pyradiomics_testcases", "prostate_phantom_subvolume.nrrd"),  # uint16
    ("Task04_Hippocampus", "imagesTr", "hippocampus_001.nii.gz"),  # uint8
    ("Task04_Hippocampus", "imagesTr", "hippocampus_003.nii.gz"),  # float32
    ("totalseg_examples", "example_ct_sm.nii.gz"),
    ("ISBI2012_EM_membrane", "image", "0.png"),  # 8-bit grey
    ("DRIVE", "training", "images", "21_training.tif"),  # RGB TIFF
]
REAL_LABELS = [
    ("pyradiomics_testcases", "brain1_label.nrrd"),  # int32
    ("pyradiomics_testcases", "prostate_phantom_subvolume-label.nrrd"),  # {0, 1, 7, 8, 9}
    ("Task04_Hippocampus", "labelsTr", "hippocampus_001.nii.gz"),  # uint8
    ("Task04_Hippocampus", "labelsTr", "hippocampus_003.nii.gz"),  # stored as float32
    ("totalseg_examples", "example_seg.nii.gz"),  # many labels
    ("ISBI2012_EM_membrane", "label", "0.png"),  # 0/255
    ("DRIVE", "training", "1st_manual", "21_manual1.gif"),  # 0/255 GIF
]


def _ending(parts: tuple[str, ...]) -> str:
    name = parts[-1]
    return ".nii.gz" if name.endswith(".nii.gz") else name[name.rindex("."):]


@pytest.mark.parametrize("parts", REAL_IMAGES, ids=lambda p: p[-1])
def test_real_images_survive_read_write_read_unchanged(parts, tmp_path):
    source = shared(*parts)
    io = io_for(source)
    image, geometry = io.read_images([source])
    copy = tmp_path / f"copy{_ending(parts)}"
    io.write_image(image if image.shape[0] > 1 else image[0], copy, geometry)
    again, geometry_again = io.read_images([copy])
    assert again.dtype == np.float32 and again.shape == image.shape
    np.testing.assert_array_equal(again, image)
    assert geometry_again == geometry


@pytest.mark.parametrize("parts", REAL_LABELS, ids=lambda p: p[-1])
def test_real_label_maps_survive_read_write_read_unchanged(parts, tmp_path):
    source = shared(*parts)
    io = io_for(source)
    seg, geometry = io.read_seg(source)
    ending = ".png" if parts[-1].endswith(".gif") else _ending(parts)
    copy = tmp_path / f"copy{ending}"
    io_for(copy).write_seg(seg, copy, geometry)
    again, geometry_again = io_for(copy).read_seg(copy)
    assert again.dtype.kind in "ui"
    np.testing.assert_array_equal(again, seg)
    assert geometry_again == geometry


def test_rgb_tiff_reads_as_three_channels_of_one_pseudo_2d_slice():
    image, geometry = io_for(".tif").read_images([shared("DRIVE", "training", "images", "21_training.tif")])
    assert image.shape == (3, 1, 584, 565)
    assert geometry.spacing == (PSEUDO_2D_SPACING, 1.0, 1.0) and geometry.is_2d
    raw = np.asarray(Image.open(shared("DRIVE", "training", "images", "21_training.tif")))
    np.testing.assert_array_equal(image[:, 0], np.moveaxis(raw, -1, 0))


def test_spacing_is_in_array_order_and_origin_in_itk_order():
    path = shared("pyradiomics_testcases", "brain1_image.nrrd")
    image, geometry = io_for(path).read_images([path])
    itk = sitk.ReadImage(str(path))
    assert image.shape[1:] == tuple(reversed(itk.GetSize()))
    assert geometry.spacing == tuple(reversed(itk.GetSpacing()))
    assert geometry.origin == itk.GetOrigin()
    assert geometry.spacing[0] == pytest.approx(6.5)


def test_float_label_files_with_whole_numbers_read_as_integers(tmp_path):
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[0.0, 1.0], [2.0, 2.0]]], np.float32)), str(path))
    seg, _ = io_for(path).read_seg(path)
    assert seg.dtype == np.uint8
    np.testing.assert_array_equal(seg, [[[0, 1], [2, 2]]])


def test_label_files_with_fractions_are_rejected_with_the_values(tmp_path):
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[0.0, 0.5], [1.0, 2.25]]], np.float32)), str(path))
    with pytest.raises(NonIntegerLabelError, match=r"label\.nii\.gz holds non-integer values \(0\.5, 2\.25\)"):
        io_for(path).read_seg(path)


def test_palette_png_gives_colours_as_image_and_indices_as_label(tmp_path):
    path = tmp_path / "palette.png"
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * (253 * 3))
    img.save(path)
    io = io_for(path)
    image, _ = io.read_images([path])
    assert image.shape == (3, 1, 2, 2)
    np.testing.assert_array_equal(image[:, 0, 0, 1], [255, 0, 0])
    np.testing.assert_array_equal(io.read_seg(path)[0][0], indices)


def test_grey_palette_gif_reads_as_one_channel(tmp_path):
    path = tmp_path / "grey.gif"
    img = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    img.putpalette([v for i in range(256) for v in (i * 255 if i < 2 else 0,) * 3])
    img.save(path)
    image, _ = io_for(path).read_images([path])
    assert image.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(image[0, 0], [[0, 255], [255, 0]])


def test_colour_label_file_with_different_channels_is_rejected(tmp_path):
    path = tmp_path / "colour.png"
    Image.fromarray(np.array([[[255, 0, 0]]], np.uint8)).save(path)
    with pytest.raises(AutoSegNetError, match="different R, G and B"):
        io_for(path).read_seg(path)


def test_fractional_images_cannot_be_written_as_png(tmp_path):
    with pytest.raises(AutoSegNetError, match="cannot be stored in this format without loss"):
        io_for(".png").write_image(np.full((1, 2, 2), 0.5, np.float32), tmp_path / "x.png", Geometry((999, 1, 1)))


def test_jpeg_label_files_are_refused(tmp_path):
    with pytest.raises(AutoSegNetError, match="JPEG is lossy"):
        io_for(".jpg").write_seg(np.zeros((1, 2, 2), np.uint8), tmp_path / "x.jpg", Geometry((999, 1, 1)))


GEOMETRIES = {
    "3d": ((5, 6, 7), Geometry((2.0, 0.5, 0.7), (-10.0, 3.5, 20.0), (0, 1, 0, -1, 0, 0, 0, 0, 1))),
    "anisotropic": ((3, 8, 8), Geometry((6.5, 0.78125, 0.78125), (1.5, -2.0, 3.25))),
    "2d": ((1, 6, 7), Geometry((PSEUDO_2D_SPACING, 0.4, 0.3), (1.0, 2.0, 0.0), image_dim=2)),
}
SITK_ENDINGS = [".nii.gz", ".nii", ".nrrd", ".mha"]


@pytest.mark.parametrize("kind", sorted(GEOMETRIES))
@pytest.mark.parametrize("ending", SITK_ENDINGS)
def test_medical_formats_round_trip_geometry_and_values(kind, ending, tmp_path):
    shape, geometry = GEOMETRIES[kind]
    rng = np.random.default_rng(0)
    io = io_for(ending)
    channels = rng.normal(0, 100, (2, *shape)).astype(np.float32)
    paths = [tmp_path / f"case_{c:04d}{ending}" for c in range(2)]
    for channel, path in zip(channels, paths):
        io.write_image(channel, path, geometry)
    seg = rng.integers(0, 4, shape).astype(np.uint8)
    io.write_seg(seg, tmp_path / f"case{ending}", geometry)
    image, read_geometry = io.read_images(paths)
    np.testing.assert_array_equal(image, channels)
    assert read_geometry.differences(geometry, tolerance=1e-6) == [] and read_geometry.image_dim == geometry.image_dim
    seg_read, seg_geometry = io.read_seg(tmp_path / f"case{ending}")
    np.testing.assert_array_equal(seg_read, seg)
    assert seg_geometry.differences(geometry, tolerance=1e-6) == []


@pytest.mark.parametrize("name", sorted(registered_ios()))
def test_every_registered_reader_round_trips_every_ending_it_claims(name, tmp_path):
    io = io_by_name(name)
    shape, geometry = GEOMETRIES["2d"]
    seg = (np.arange(np.prod(shape)).reshape(shape) % 3).astype(np.uint8)
    image = (seg * 40 + 7).astype(np.float32)
    for ending in io.endings:
        if ending in (".nhdr", ".mhd"):
            continue  # header + separate data file: written as a pair by ITK, same code path as .nrrd/.mha
        image_path, seg_path = tmp_path / f"image{ending}", tmp_path / f"label{ending}"
        io.write_image(image, image_path, geometry)
        lossy = ending in (".jpg", ".jpeg")
        read, _ = io.read_images([image_path])
        if not lossy:
            np.testing.assert_array_equal(read[0], image, err_msg=ending)
            io.write_seg(seg, seg_path, geometry)
            np.testing.assert_array_equal(io.read_seg(seg_path)[0], seg, err_msg=ending)
        assert io_for(image_path).name == name


def test_unknown_ending_lists_the_supported_ones():
    with pytest.raises(AutoSegNetError, match=r"No image reader for files ending in '\.xyz'.*\.nii\.gz.*\.png"):
        io_for("case.xyz")


def test_unknown_reader_name_suggests_the_close_one():
    with pytest.raises(AutoSegNetError, match="Did you mean 'SimpleITKIO'"):
        io_by_name("SimpleITKIo")


def test_geometry_mismatches_name_the_aspect_and_give_both_values():
    a = Geometry((1.0, 1.0, 1.0), (-1.0, -1.0, 1.0))
    b = Geometry((1.0, 1.1, 1.0), (0.0, -1.0, 1.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    found = a.mismatches(b)
    assert set(found) == {"spacing", "origin", "direction"}
    assert found["spacing"] == "spacing [1, 1, 1] vs [1, 1.1, 1] (z, y, x mm)"
    assert found["origin"] == "origin [-1, -1, 1] vs [0, -1, 1] (x, y, z mm), difference [1, 0, 0]"
    assert a.mismatches(Geometry((1.0, 1.0, 1.0), (-1.0005, -1.0, 1.0)), tolerance=1e-3) == {}


def test_pseudo_2d_spacing_does_not_widen_the_origin_tolerance():
    a = Geometry((PSEUDO_2D_SPACING, 1.0, 1.0), image_dim=2)
    b = Geometry((PSEUDO_2D_SPACING, 1.0, 1.0), (0.5, 0.0, 0.0), image_dim=2)
    assert "origin" in a.mismatches(b)


@pytest.mark.parametrize("ending", [".nii", ".nii.gz"])
def test_truncated_nifti_files_are_refused_instead_of_zero_filled(ending, tmp_path):
    path = tmp_path / f"image{ending}"
    io_for(ending).write_image(np.arange(4000, dtype=np.float32).reshape(10, 20, 20), path, Geometry((1, 1, 1)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AutoSegNetError, match=r"Cannot read image .*image\.nii(\.gz)?: .*truncated"):
        io_for(ending).read_images([path])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_and_inf_stored_in_nifti_are_counted_although_itk_reads_them_as_zero(dtype, tmp_path):
    path = tmp_path / "image.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.array([[[np.nan, np.inf, -np.inf, 1.0]]], dtype)), str(path))
    assert nifti_non_finite(path) == (1, 2)
    assert nifti_non_finite(shared("Task04_Hippocampus", "imagesTr", "hippocampus_003.nii.gz")) == (0, 0)
