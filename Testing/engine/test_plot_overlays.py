"""``autosegnet plot-overlays``: PNG overlays of labels (and predictions) on their images, and the gallery.

Fast tests use tiny synthetic cases written with the engine's writers; with the style's percentiles set to
(0, 100) and images holding 0..255, the grey of a pixel is exactly its value, so colours can be checked exactly.
The slow tests draw the shared real data (Hippocampus, EM membranes, DRIVE) and are skipped without it.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from AutoSegNetLib.cli import main
from AutoSegNetLib.dataset import DatasetJson, RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import PSEUDO_2D_SPACING, Geometry, io_for
from AutoSegNetLib.imageio.orientation import Reorientation
from AutoSegNetLib.qc import (
    LabelNames,
    OverlayCase,
    OverlayOptions,
    OverlayStyle,
    dataset_cases,
    folder_cases,
    plot_case,
    plot_overlays,
)
from AutoSegNetLib.qc import overlays as ov
from AutoSegNetLib.qc.figure import BACKGROUND, GAP, LINE_HEIGHT, MARGIN, SWATCH, Panel, panel_origins
from AutoSegNetLib.qc.plot import slice_in_file

EXACT = OverlayOptions(style=OverlayStyle(percentiles=(0.0, 100.0)))
LABELS = {"background": 0, "liver": 1, "tumour": 2}


# ----- fixtures: tiny cases written with the engine's writers ------------------------------------------------------
def ramp_image(shape: tuple[int, int, int]) -> np.ndarray:
    """``(Z, Y, X)`` float32 whose value is ``x * 255 / (X - 1)`` rounded: greys 0..255 across each row."""
    columns = np.rint(np.arange(shape[2]) * 255 / (shape[2] - 1))
    return np.broadcast_to(columns, shape).astype(np.float32)


def write_case(images: Path, labels: Path, name: str, image: np.ndarray, label: np.ndarray,
               spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), ending: str = ".nii.gz") -> OverlayCase:
    """Write ``image`` ``(C, Z, Y, X)`` as channel files and ``label`` ``(Z, Y, X)``; 2D endings get a 2D geometry."""
    io = io_for(ending)
    is_2d = ending == ".png"
    geometry = Geometry((PSEUDO_2D_SPACING, *spacing[1:]), image_dim=2) if is_2d else Geometry(spacing)
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    files = []
    for index, channel in enumerate(image):
        files.append(images / f"{name}_{index:04d}{ending}")
        io.write_image(channel, files[-1], geometry)
    io.write_seg(label, labels / f"{name}{ending}", geometry)
    return OverlayCase(name, tuple(files), labels / f"{name}{ending}")


def square_label(shape: tuple[int, int, int], value: int, rows: slice, cols: slice, z: int = 0) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[z, rows, cols] = value
    return label


@pytest.fixture
def a_raw_dataset(tmp_path: Path) -> Path:
    """``Dataset001_Toy``: two 3D cases 3x16x16 (1 mm) with a liver square on slice 1 and a tumour on case_b."""
    folder = tmp_path / "Dataset001_Toy"
    shape = (3, 16, 16)
    label_a = square_label(shape, 1, slice(4, 12), slice(4, 12), z=1)
    label_b = square_label(shape, 1, slice(2, 6), slice(2, 6), z=2)
    label_b[2, 10:14, 10:14] = 2
    for name, label in (("case_a", label_a), ("case_b", label_b)):
        write_case(folder / "imagesTr", folder / "labelsTr", name, ramp_image(shape)[None], label)
    DatasetJson({"0": "MRI"}, dict(LABELS), 2, ".nii.gz").save(folder / "dataset.json")
    return folder


def png_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def panel_extent(pixels: np.ndarray, origin: tuple[int, int]) -> tuple[int, int]:
    """``(height, width)`` of the panel starting at ``origin`` (x, y): up to the first figure-background pixel."""
    x, y = origin
    width = next(i for i in range(pixels.shape[1] - x) if tuple(pixels[y, x + i]) == BACKGROUND)
    height = next(i for i in range(pixels.shape[0] - y) if tuple(pixels[y + i, x]) == BACKGROUND)
    return height, width


def blended(grey: int | tuple[int, int, int], value: int, alpha: float = 0.4) -> tuple[int, ...]:
    base = np.broadcast_to(np.asarray(grey, float), (3,))
    return tuple(int(v) for v in np.rint((1 - alpha) * base + alpha * np.asarray(ov.label_colour(value))))


# ----- slice choice, windowing and drawing (pure functions) --------------------------------------------------------
def test_the_chosen_slice_is_the_one_with_the_most_foreground() -> None:
    seg = np.zeros((5, 6, 6), np.uint8)
    seg[1, :2, :2] = 1
    seg[3, :3, :3] = 2
    seg[4, :2, :] = 1
    assert ov.choose_plane(seg, (1.0, 1.0, 1.0)) == ov.Plane(axis=0, index=4, count=5)


def test_the_ignore_label_does_not_count_as_foreground_and_an_empty_reference_falls_back_to_the_prediction() -> None:
    seg = np.zeros((4, 3, 3), np.uint8)
    seg[0] = 3  # ignore everywhere on slice 0
    seg[2, 0, 0] = 1
    assert ov.choose_plane(seg, (1.0, 1.0, 1.0), ignore_label=3).index == 2
    prediction = np.zeros_like(seg)
    prediction[1, 1, 1] = 1
    assert ov.choose_plane(np.zeros_like(seg), (1.0, 1.0, 1.0), prediction).index == 1
    assert ov.choose_plane(np.zeros_like(seg), (1.0, 1.0, 1.0)).index == 2  # nothing anywhere: the middle


@pytest.mark.parametrize(("spacing", "shape", "axis"), [
    ((1.0, 1.0, 1.0), (4, 5, 6), 0),        # isotropic: axial
    ((5.0, 0.8, 0.8), (4, 5, 6), 0),        # thick axial slices
    ((1.0, 3.0, 1.0), (4, 5, 6), 1),        # coarsest y: coronal
    ((1.0, 1.0, 2.5), (4, 5, 6), 2),        # coarsest x: sagittal
    ((1.0, 1.005, 1.0), (4, 5, 6), 0),      # within 1 %: still axial
    ((PSEUDO_2D_SPACING, 1.0, 1.0), (1, 5, 6), 0),  # 2D: the image itself
])
def test_the_slice_is_cut_across_the_coarsest_axis_or_axially(spacing, shape, axis) -> None:
    assert ov.slice_axis(spacing, shape) == axis


def test_coronal_and_sagittal_planes_show_higher_z_at_the_top() -> None:
    volume = np.broadcast_to(np.arange(4)[:, None, None], (4, 5, 6))
    sagittal = ov.take_plane(volume, ov.Plane(axis=2, index=0, count=6))
    assert sagittal.shape == (4, 5) and sagittal[0, 0] == 3 and sagittal[-1, 0] == 0
    assert ov.take_plane(volume, ov.Plane(axis=0, index=2, count=4)).shape == (5, 6)


def test_a_sagittal_slice_of_a_turned_volume_is_named_by_its_index_in_the_file() -> None:
    turn = Reorientation.between("RAS", "LPS")  # x and y reversed
    assert slice_in_file(ov.Plane(axis=2, index=0, count=6), turn, (4, 5, 6)) == (2, 5)
    assert slice_in_file(ov.Plane(axis=0, index=3, count=4), turn, (4, 5, 6)) == (0, 3)
    assert slice_in_file(ov.Plane(axis=1, index=1, count=5), None, (4, 5, 6)) == (1, 1)


@pytest.mark.parametrize(("shape", "spacing", "expected"), [
    ((10, 20), (2.0, 1.0), (260, 260)),     # 20 mm x 20 mm, enlarged 13 times
    ((10, 20), (1.0, 1.0), (130, 260)),
    ((25, 256), (6.5, 0.78), (208, 256)),   # 25 thick rows become 208 display rows
    ((2000, 1000), (1.0, 1.0), (1024, 512)),  # shrunk to the largest size
])
def test_display_pixels_are_square_in_mm(shape, spacing, expected) -> None:
    assert ov.display_shape(shape, spacing, OverlayStyle()) == expected


def test_nearest_neighbour_enlargement_keeps_label_values_as_blocks() -> None:
    labels = np.array([[0, 1], [2, 0]])
    assert ov.resize_nearest(labels, (4, 4)).tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0], [2, 2, 0, 0]]


def test_a_channel_named_ct_is_shown_through_the_soft_tissue_window() -> None:
    options = OverlayOptions(channel_names=("CT",))
    window = ov.intensity_window(np.array([[[-1000.0, 40.0, 3000.0]]]), options.is_ct(), options.style)
    assert window == (-160.0, 240.0)
    grey = ov.to_display_rgb(np.array([[[-1000.0, 40.0, 3000.0]]]), window)
    assert grey[0, :, 0].tolist() == [0, 128, 255]
    assert not OverlayOptions(channel_names=("MRI",)).is_ct()


def test_other_channels_are_windowed_at_their_percentiles() -> None:
    channel = np.arange(1001, dtype=np.float32).reshape(1, 1, -1)
    assert ov.intensity_window(channel, False, OverlayStyle()) == pytest.approx((5.0, 995.0))


def test_contours_are_the_inner_rim_of_a_label_and_fills_blend_its_colour() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1:5, 1:5] = 1
    rim = ov.contour(labels == 1, 1)
    assert rim.sum() == 12 and not rim[2:4, 2:4].any()
    picture = np.full((6, 6, 3), 100, np.uint8)
    drawn = ov.reference_panel(picture, labels, [1], OverlayStyle())
    assert tuple(drawn[1, 1]) == ov.label_colour(1)
    assert tuple(drawn[2, 2]) == blended(100, 1)
    assert tuple(drawn[0, 0]) == (100, 100, 100)


def test_region_datasets_name_label_values_through_regions_class_order() -> None:
    dataset_json = DatasetJson({"0": "T1"}, {"background": 0, "whole": [1, 2], "core": [2]}, 1, ".nii.gz",
                               regions_class_order=[1, 2])
    assert LabelNames.from_dataset_json(dataset_json).names == ((1, "whole"), (2, "core"))
    assert LabelNames().name(7) == "label 7"


# ----- whole pictures ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", [".nii.gz", ".png"], ids=["3d", "2d"])
def test_a_label_fill_colour_appears_where_the_label_is_and_background_keeps_the_image_grey(tmp_path, ending) -> None:
    shape = (1, 16, 16)
    label = square_label(shape, 2, slice(4, 12), slice(4, 12))
    case = write_case(tmp_path / "im", tmp_path / "lb", "c", ramp_image(shape)[None], label, ending=ending)
    result = plot_case(case, tmp_path / "out", EXACT)
    pixels = png_pixels(tmp_path / "out" / "c.png")
    x0, y0 = panel_origins([Panel("", np.zeros((256, 256, 3)))])[0]
    zoom = 16  # 16 voxels -> 256 display pixels
    inside_row, inside_col = 8 * zoom + 3, 7 * zoom + 3  # voxel (8, 7), away from the contour
    grey = 7 * 17
    assert tuple(pixels[y0 + inside_row, x0 + inside_col]) == blended(grey, 2)
    assert tuple(pixels[y0 + 4 * zoom, x0 + 8 * zoom]) == ov.label_colour(2)  # the rim
    for voxel_row, voxel_col in ((0, 0), (2, 9), (14, 15)):
        grey = voxel_col * 17
        assert tuple(pixels[y0 + voxel_row * zoom + 5, x0 + voxel_col * zoom + 5]) == (grey, grey, grey)
    assert result.plane.count == 1 and [s.value for s in result.labels] == [2]


def test_a_multi_channel_case_shows_the_chosen_channel_file(tmp_path) -> None:
    shape = (1, 8, 8)
    image = np.stack([np.zeros(shape, np.float32), ramp_image(shape)])
    case = write_case(tmp_path / "im", tmp_path / "lb", "c", image, np.zeros(shape, np.uint8))
    options = OverlayOptions(style=EXACT.style, channel=1)
    plot_case(case, tmp_path / "out", options)
    pixels = png_pixels(tmp_path / "out" / "c.png")
    x0, y0 = panel_origins([Panel("", np.zeros((256, 256, 3)))])[0]
    assert tuple(pixels[y0 + 5, x0 + 7 * 32 + 5]) == (255, 255, 255)
    with pytest.raises(AutoSegNetError, match=r"Case 'c' has 2 channel file\(s\); there is no channel 2"):
        plot_case(case, tmp_path / "out", OverlayOptions(channel=2))


def test_anisotropic_spacing_gives_the_png_panel_its_physical_aspect_ratio(tmp_path) -> None:
    shape = (4, 10, 20)
    label = np.ones(shape, np.uint8)  # the whole panel is tinted, so it stands out from the figure background
    extents = {}
    for name, spacing in (("thick_rows", (3.0, 2.0, 1.0)), ("isotropic", (1.0, 1.0, 1.0))):
        case = write_case(tmp_path / "im", tmp_path / "lb", name, ramp_image(shape)[None], label, spacing)
        plot_case(case, tmp_path / "out", EXACT)
        pixels = png_pixels(tmp_path / "out" / f"{name}.png")
        extents[name] = panel_extent(pixels, panel_origins([Panel("", np.zeros((1, 1, 3)))])[0])
    assert extents == {"thick_rows": (260, 260), "isotropic": (130, 260)}


@pytest.mark.parametrize(("direction", "pixel", "file_index", "shown_index"), [
    ((-1, 0, 0, 0, -1, 0, 0, 0, 1), (240, 240), 1, 1),  # stored RAS: turned so the patient's right is on the left
    ((1, 0, 0, 0, 1, 0, 0, 0, -1), (20, 20), 0, 2),     # stored LPI: z reversed, the file's slice index reported
])
def test_volumes_are_shown_in_lps_and_the_slice_is_named_by_its_index_in_the_file(tmp_path, direction, pixel,
                                                                                   file_index, shown_index) -> None:
    shape = (3, 8, 8)
    label = square_label(shape, 1, slice(0, 2), slice(0, 2), z=file_index)
    io = io_for(".nii.gz")
    geometry = Geometry((1.0, 1.0, 1.0), direction=tuple(float(d) for d in direction))
    for folder in ("im", "lb"):
        (tmp_path / folder).mkdir()
    io.write_image(ramp_image(shape), tmp_path / "im" / "c_0000.nii.gz", geometry)
    io.write_seg(label, tmp_path / "lb" / "c.nii.gz", geometry)
    case = OverlayCase("c", (tmp_path / "im" / "c_0000.nii.gz",), tmp_path / "lb" / "c.nii.gz")
    result = plot_case(case, tmp_path / "out", EXACT)
    pixels = png_pixels(tmp_path / "out" / "c.png")
    x0, y0 = panel_origins([Panel("", np.zeros((256, 256, 3)))])[0]
    assert tuple(pixels[y0 + pixel[0], x0 + pixel[1]]) == blended(0, 1)  # file column 0 holds grey 0
    assert (result.file_axis, result.file_index, result.where) == (0, file_index, f"axial slice z={file_index} of 3")
    assert result.plane.index == shown_index


def test_an_rgb_image_keeps_its_colours(tmp_path) -> None:
    rgb = np.zeros((3, 1, 8, 8), np.uint8)
    rgb[:, 0, :, :4] = np.array([200, 30, 30])[:, None, None]
    rgb[:, 0, :, 4:] = np.array([30, 60, 200])[:, None, None]
    case = _rgb_case(tmp_path, rgb)
    plot_case(case, tmp_path / "out", OverlayOptions())
    pixels = png_pixels(tmp_path / "out" / "photo.png")
    x0, y0 = panel_origins([Panel("", np.zeros((256, 256, 3)))])[0]
    assert tuple(pixels[y0 + 200, x0 + 10]) == (200, 30, 30)
    assert tuple(pixels[y0 + 200, x0 + 250]) == (30, 60, 200)
    assert tuple(pixels[y0 + 20, x0 + 20]) == blended((200, 30, 30), 1)


def _rgb_case(tmp_path: Path, rgb: np.ndarray) -> OverlayCase:
    """An RGB photograph ``photo_0000.png`` (one file, three channels) with a label square at its top left."""
    io = io_for(".png")
    geometry = Geometry((PSEUDO_2D_SPACING, 1.0, 1.0), image_dim=2)
    (tmp_path / "im").mkdir()
    (tmp_path / "lb").mkdir()
    io.write_image(rgb, tmp_path / "im" / "photo_0000.png", geometry)
    io.write_seg(square_label((1, 8, 8), 1, slice(0, 2), slice(0, 2)), tmp_path / "lb" / "photo.png", geometry)
    return OverlayCase("photo", (tmp_path / "im" / "photo_0000.png",), tmp_path / "lb" / "photo.png")


def test_the_legend_names_come_from_dataset_json(a_raw_dataset, tmp_path) -> None:
    raw = RawDataset.open(a_raw_dataset)
    options = OverlayOptions(labels=LabelNames.from_dataset_json(raw.dataset_json))
    results = plot_overlays(dataset_cases(raw), tmp_path / "out", options)
    case_b = results[1]
    assert [(s.name, s.reference_voxels) for s in case_b.labels] == [("liver", 16), ("tumour", 16)]
    assert [(s.name, s.reference_voxels) for s in results[0].labels] == [("liver", 64), ("tumour", 0)]
    pixels = png_pixels(tmp_path / "out" / "case_b.png")
    legend_top = panel_origins([Panel("", np.zeros((256, 256, 3)))])[0][1] + 256 + GAP
    swatch = (legend_top + (LINE_HEIGHT - SWATCH) // 2 + 2, MARGIN + 2)
    assert tuple(pixels[swatch]) == ov.label_colour(1)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "liver" in page and "tumour" in page


def test_index_html_lists_every_case_and_links_only_to_existing_pngs(a_raw_dataset, tmp_path) -> None:
    assert main(["plot-overlays", "-d", str(a_raw_dataset), "-o", str(tmp_path / "out"), "-np", "2"]) == 0
    page = (tmp_path / "out" / "index.html").read_text()
    links = LinkCollector.of(page)
    assert {"case_a.png", "case_b.png"} <= set(links)
    for link in links:
        assert "://" not in link and not link.startswith("/")
        assert link.startswith("#") or (tmp_path / "out" / link).is_file()
    for case in ("case_a", "case_b"):
        assert f"<h2>{case}</h2>" in page
    assert "axial slice z=1 of 3" in page and "axial slice z=2 of 3" in page
    summary = json.loads((tmp_path / "out" / "overlays.json").read_text())
    assert [c["slice"] for c in summary["cases"]] == [1, 2]


class LinkCollector(HTMLParser):
    """Every ``href`` and ``src`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.links.extend(value for name, value in attrs if name in ("href", "src") and value)

    @classmethod
    def of(cls, page: str) -> list[str]:
        parser = cls()
        parser.feed(page)
        return parser.links


def test_prediction_contours_appear_only_with_p(a_raw_dataset, tmp_path) -> None:
    predictions = tmp_path / "pred"
    predictions.mkdir()
    shape = (3, 16, 16)
    geometry = Geometry((1.0, 1.0, 1.0))
    io = io_for(".nii.gz")
    io.write_seg(square_label(shape, 1, slice(6, 14), slice(4, 12), z=1), predictions / "case_a.nii.gz", geometry)
    assert main(["plot-overlays", "-d", str(a_raw_dataset), "-o", str(tmp_path / "plain"), "-np", "1"]) == 0
    assert main(["plot-overlays", "-d", str(a_raw_dataset), "--pred", str(predictions), "-o",
                 str(tmp_path / "compared"), "-np", "1"]) == 0
    plain = png_pixels(tmp_path / "plain" / "case_a.png")
    compared = png_pixels(tmp_path / "compared" / "case_a.png")
    panel = np.zeros((256, 256, 3))
    (x1, y1), (x2, y2) = panel_origins([Panel("", panel), Panel("", panel)])
    below_reference = (y2 + 13 * 16 + 15, x2 + 8 * 16)  # the prediction's bottom rim, under the reference square
    assert tuple(compared[below_reference]) == ov.label_colour(1)
    assert plain.shape[1] < x2 + 256 <= compared.shape[1]  # one panel without -p, two with it
    assert "Dice" not in (tmp_path / "plain" / "index.html").read_text()
    assert not (tmp_path / "compared" / "case_b.png").exists()  # only cases with a prediction are drawn
    summary = json.loads((tmp_path / "compared" / "overlays.json").read_text())
    liver = summary["cases"][0]["labels"][0]
    assert (liver["name"], liver["reference_voxels"], liver["prediction_voxels"]) == ("liver", 64, 64)
    assert liver["dice"] == pytest.approx(2 * 48 / 128)
    assert "Dice" in (tmp_path / "compared" / "index.html").read_text()


def test_a_folder_pair_with_a_missing_label_gives_an_error_naming_the_case(tmp_path, capsys) -> None:
    shape = (2, 4, 4)
    for name in ("kept", "lonely"):
        write_case(tmp_path / "im", tmp_path / "lb", name, ramp_image(shape)[None], np.zeros(shape, np.uint8))
    (tmp_path / "lb" / "lonely.nii.gz").unlink()
    with pytest.raises(AutoSegNetError, match=r"1 case\(s\) in .* have no label map in .*: 'lonely'"):
        folder_cases(tmp_path / "im", tmp_path / "lb")
    assert main(["plot-overlays", "-i", str(tmp_path / "im"), "-l", str(tmp_path / "lb"), "-o",
                 str(tmp_path / "out")]) == 2
    assert "'lonely'" in capsys.readouterr().err


def test_images_and_labels_of_different_sizes_give_an_error_naming_the_case_and_files(tmp_path) -> None:
    shape = (2, 4, 4)
    case = write_case(tmp_path / "im", tmp_path / "lb", "odd", ramp_image(shape)[None], np.zeros(shape, np.uint8))
    io_for(".nii.gz").write_seg(np.zeros((2, 4, 5), np.uint8), case.reference, Geometry((1.0, 1.0, 1.0)))
    with pytest.raises(AutoSegNetError, match=r"Case 'odd': .*odd_0000.nii.gz has \(2, 4, 4\) voxels .* \(2, 4, 5\)"):
        plot_case(case, tmp_path / "out", OverlayOptions())


def test_the_command_needs_either_a_dataset_or_an_image_and_label_folder(tmp_path, capsys) -> None:
    assert main(["plot-overlays", "-i", str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "-i IMAGES together with -l LABELS" in capsys.readouterr().err


def test_progress_json_reports_the_stage_every_case_and_the_gallery(a_raw_dataset, tmp_path, capsys) -> None:
    assert main(["plot-overlays", "--progress", "json", "-d", str(a_raw_dataset), "-o", str(tmp_path / "out"),
                 "-np", "2"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["stage", "case", "case", "done"]
    assert sorted(e["case"] for e in events if e["event"] == "case") == ["case_a", "case_b"]
    assert events[-1]["index"] == str(tmp_path / "out" / "index.html") and events[-1]["cases"] == 2


# ----- real data (slow) --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_hippocampus_dataset_gets_named_labels_on_its_most_labelled_slice(tmp_path) -> None:
    from _helpers_dataset import converted_hippocampus

    folder = converted_hippocampus(tmp_path, 3)
    assert main(["plot-overlays", "-d", str(folder), "-o", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "overlays.json").read_text())
    assert len(summary["cases"]) == 3
    for case in summary["cases"]:
        assert [label["name"] for label in case["labels"]] == ["Anterior", "Posterior"]
        assert case["plane"] == "axial" and (tmp_path / "out" / case["png"]).is_file()


@pytest.mark.slow
def test_real_2d_em_membranes_and_rgb_drive_photographs(tmp_path) -> None:
    from _helpers_dataset import shared

    em = shared("ISBI2012_EM_membrane")
    assert main(["plot-overlays", "-i", str(em / "image"), "-l", str(em / "label"), "-o", str(tmp_path / "em")]) == 0
    assert len(json.loads((tmp_path / "em" / "overlays.json").read_text())["cases"]) == 30
    drive = shared("DRIVE", "training")
    for folder in ("images", "labels", "pred"):
        (tmp_path / folder).mkdir()
    for number in (21, 22):
        (tmp_path / "images" / f"{number}_0000.tif").symlink_to(drive / "images" / f"{number}_training.tif")
        (tmp_path / "labels" / f"{number}.gif").symlink_to(drive / "1st_manual" / f"{number}_manual1.gif")
    (tmp_path / "pred" / "21.gif").symlink_to(drive / "1st_manual" / "21_manual1.gif")
    assert main(["plot-overlays", "-i", str(tmp_path / "images"), "-l", str(tmp_path / "labels"), "--pred",
                 str(tmp_path / "pred"), "-o", str(tmp_path / "drive")]) == 0
    case = json.loads((tmp_path / "drive" / "overlays.json").read_text())["cases"][0]
    assert case["case"] == "21" and case["labels"][0]["dice"] == 1.0
    pixels = png_pixels(tmp_path / "drive" / "21.png")
    x0, y0 = panel_origins([Panel("", np.zeros((1, 1, 3)))])[0]
    photo = pixels[y0 + 100:y0 + 500, x0 + 100:x0 + 500].astype(int)
    assert (photo[..., 0] - photo[..., 2]).mean() > 40  # a reddish fundus photograph, not grey
