"""Fingerprint extraction: geometry per case, foreground intensity statistics, fingerprint.json format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _helpers_planning import hippocampus_workspace, write_case, write_dataset_json
from PIL import Image

from AutoSegNetLib.cli import main as cli_main
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.fingerprint import (
    Fingerprint,
    WeightedSample,
    extract_fingerprint,
    intensity_statistics,
    sample_foreground,
)
from AutoSegNetLib.fingerprint.crop import nonzero_bounding_box
from AutoSegNetLib.fingerprint.intensity import samples_per_case, weighted_percentiles
from AutoSegNetLib.workspace import Workspace

SHAPE = (8, 12, 10)


def _case_arrays(seed: int, num_channels: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Channel 0 non-zero in [2:6, 3:10, 1:9]; channel 1 (if any) adds [1:2, 3:4, 0:1]; labels 1/2 inside."""
    rng = np.random.default_rng(seed)
    channels = []
    for c in range(num_channels):
        image = np.zeros(SHAPE, np.float32)
        image[2:6, 3:10, 1:9] = rng.integers(1, 200, size=(4, 7, 8))
        if c == 1:
            image[1, 3, 0] = 5.0
        channels.append(image)
    seg = np.zeros(SHAPE, np.uint8)
    seg[3:5, 4:8, 2:6] = 1
    seg[3, 4, 2] = 2
    return channels, seg


#: Few draws keep the tests fast; the CLI test uses nnU-Net's 10e7.
FEW = 30_000


@pytest.fixture(params=[1, 2], ids=["one-channel", "two-channels"])
def a_small_workspace(request, tmp_path: Path) -> Workspace:
    return small_workspace(tmp_path, request.param)


def small_workspace(tmp_path: Path, num_channels: int) -> Workspace:
    """Dataset001_Small: 3 cases of (8, 12, 10) voxels, spacing (2, 0.5, 0.75) mm (z, y, x)."""
    workspace = Workspace.at(tmp_path / "ws")
    raw = workspace.raw / "Dataset001_Small"
    write_dataset_json(raw, {str(c): "MRI" for c in range(num_channels)}, {"background": 0, "a": 1, "b": 2}, 3)
    for i in range(3):
        channels, seg = _case_arrays(i, num_channels)
        write_case(raw, f"case_{i}", channels, seg, (2.0, 0.5, 0.75))
    return workspace


def test_each_case_records_spacing_and_shapes_before_and_after_cropping(a_small_workspace: Workspace):
    fingerprint = extract_fingerprint(a_small_workspace, "1", num_workers=1, total_samples=FEW)
    multi = fingerprint.num_channels == 2
    expected_after = [5, 7, 9] if multi else [4, 7, 8]  # channel 1 widens the box by one voxel in z and x
    assert [c.name for c in fingerprint.cases] == ["case_0", "case_1", "case_2"]
    for case in fingerprint.cases:
        assert case.spacing == [2.0, 0.5, 0.75]
        assert case.shape_before_crop == [8, 12, 10]
        assert case.shape_after_crop == expected_after
        assert case.relative_size_after_crop == pytest.approx(np.prod(expected_after) / 960)
        assert case.foreground_voxels == 32
    assert fingerprint.median_relative_size_after_crop == pytest.approx(np.prod(expected_after) / 960)
    assert (a_small_workspace.preprocessed / "Dataset001_Small" / "fingerprint.json").is_file()


def test_statistics_equal_those_of_nnunets_expanded_sample(a_small_workspace: Workspace):
    fingerprint = extract_fingerprint(a_small_workspace, "1", num_workers=1, total_samples=FEW)
    n = samples_per_case(3, FEW)
    for c in range(fingerprint.num_channels):
        draws = []
        for i in range(3):
            channels, seg = _case_arrays(i, fingerprint.num_channels)
            rng = np.random.RandomState(1234)
            for earlier in range(c):  # one generator serves the channels in order
                rng.choice(channels[earlier][seg > 0], n, replace=True)
            draws.append(rng.choice(channels[c][seg > 0], n, replace=True))
        expanded = np.concatenate(draws).astype(np.float64)
        stats = fingerprint.foreground_intensity_properties[str(c)]
        assert stats.mean == pytest.approx(expanded.mean(), rel=1e-9)
        assert stats.std == pytest.approx(expanded.std(), rel=1e-9)
        assert stats.median == pytest.approx(np.median(expanded), rel=1e-12)
        assert stats.min == expanded.min() and stats.max == expanded.max()
        assert stats.percentile_00_5 == pytest.approx(np.percentile(expanded, 0.5), rel=1e-12)
        assert stats.percentile_99_5 == pytest.approx(np.percentile(expanded, 99.5), rel=1e-12)


def test_weighted_percentiles_equal_numpy_percentiles_of_the_expanded_values():
    rng = np.random.default_rng(0)
    values = np.unique(rng.normal(size=50))
    counts = rng.integers(1, 20, size=values.size)
    expanded = np.repeat(values, counts)
    qs = (0.0, 0.5, 10.0, 50.0, 73.3, 99.5, 100.0)
    assert weighted_percentiles(WeightedSample(values, counts), qs) == pytest.approx(np.percentile(expanded, qs),
                                                                                    rel=1e-12, abs=1e-12)


def test_merging_samples_keeps_every_draw_once():
    a = WeightedSample(np.array([1.0, 3.0]), np.array([2, 1]))
    b = WeightedSample(np.array([3.0, 4.0]), np.array([5, 1]))
    merged = WeightedSample.merge([a, b, WeightedSample.empty()])
    assert merged.values.tolist() == [1.0, 3.0, 4.0]
    assert merged.counts.tolist() == [2, 6, 1]
    stats = intensity_statistics(merged)
    assert (stats.min, stats.max, stats.median) == (1.0, 4.0, 3.0)


def test_sampling_is_deterministic_and_draws_the_requested_number():
    image = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    first = sample_foreground(image, mask, 1000, seed=7)
    second = sample_foreground(image, mask, 1000, seed=7)
    assert [s.total for s in first] == [1000, 1000]
    assert all(np.array_equal(a.counts, b.counts) and np.array_equal(a.values, b.values) for a, b in zip(first, second))
    assert set(first[0].values) <= set(image[0][mask].tolist())


def test_the_bounding_box_covers_every_channel_and_an_empty_image_keeps_its_size():
    image = np.zeros((2, 5, 6, 7), np.float32)
    image[0, 1, 2, 3] = 1
    image[1, 3, 4, 5] = -2
    assert nonzero_bounding_box(image) == (slice(1, 4), slice(2, 5), slice(3, 6))
    assert nonzero_bounding_box(np.zeros((1, 2, 3, 4))) == (slice(0, 2), slice(0, 3), slice(0, 4))


def test_one_and_two_workers_give_the_same_fingerprint(a_small_workspace: Workspace):
    one = extract_fingerprint(a_small_workspace, "1", num_workers=1, total_samples=FEW).to_dict()
    two = extract_fingerprint(a_small_workspace, "1", num_workers=2, total_samples=FEW).to_dict()
    assert one == two


def test_the_ignore_label_is_not_foreground(tmp_path: Path):
    workspace = Workspace.at(tmp_path / "ws")
    raw = workspace.raw / "Dataset002_Ignore"
    write_dataset_json(raw, {"0": "CT"}, {"background": 0, "organ": 1, "ignore": 2}, 1)
    image = np.full((4, 4, 4), 10.0, np.float32)
    image[0] = 1000.0
    seg = np.zeros((4, 4, 4), np.uint8)
    seg[0] = 2  # unannotated slab with very different intensities
    seg[2] = 1
    write_case(raw, "case_0", [image], seg, (1.0, 1.0, 1.0))
    fingerprint = extract_fingerprint(workspace, "2", total_samples=FEW)
    stats = fingerprint.foreground_intensity_properties["0"]
    assert (stats.min, stats.max, fingerprint.cases[0].foreground_voxels) == (10.0, 10.0, 16)


def test_a_dataset_without_any_foreground_is_an_error(tmp_path: Path):
    workspace = Workspace.at(tmp_path / "ws")
    raw = workspace.raw / "Dataset003_Empty"
    write_dataset_json(raw, {"0": "MRI"}, {"background": 0, "a": 1}, 1)
    write_case(raw, "case_0", [np.ones((3, 3, 3))], np.zeros((3, 3, 3)), (1.0, 1.0, 1.0))
    with pytest.raises(AutoSegNetError, match="No foreground voxels"):
        extract_fingerprint(workspace, "3", total_samples=FEW)


def test_a_broken_case_fails_the_run_with_its_name(a_small_workspace: Workspace):
    raw = a_small_workspace.raw / "Dataset001_Small"
    (raw / "imagesTr" / "case_1_0000.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(AutoSegNetError, match="case_1"):
        extract_fingerprint(a_small_workspace, "1", num_workers=2, total_samples=FEW)


def test_natural_2d_images_get_the_pseudo_spacing_and_a_single_slice(tmp_path: Path):
    workspace = Workspace.at(tmp_path / "ws")
    raw = workspace.raw / "Dataset005_Png"
    write_dataset_json(raw, {"0": "R", "1": "G", "2": "B"}, {"background": 0, "cell": 1}, 2, ".png")
    (raw / "imagesTr").mkdir()
    (raw / "labelsTr").mkdir()
    for i in range(2):
        rgb = np.full((6, 9, 3), 50 + i, np.uint8)
        label = np.zeros((6, 9), np.uint8)
        label[2:4, 3:7] = 1
        for c in range(3):
            Image.fromarray(rgb[..., c]).save(raw / "imagesTr" / f"img{i}_{c:04d}.png")
        Image.fromarray(label).save(raw / "labelsTr" / f"img{i}.png")
    fingerprint = extract_fingerprint(workspace, "5", total_samples=FEW)
    assert fingerprint.cases[0].spacing == [999.0, 1.0, 1.0]
    assert fingerprint.cases[0].shape_after_crop == [1, 6, 9]
    assert fingerprint.foreground_intensity_properties["0"].mean == pytest.approx(50.5, abs=0.5)


# ----- fingerprint.json ---------------------------------------------------------------------------------
def test_fingerprint_json_round_trips(a_small_workspace: Workspace):
    fingerprint = extract_fingerprint(a_small_workspace, "1", total_samples=FEW)
    path = a_small_workspace.preprocessed / "Dataset001_Small" / "fingerprint.json"
    assert Fingerprint.load(path) == fingerprint
    assert Fingerprint.from_dict(json.loads(json.dumps(fingerprint.to_dict()))) == fingerprint


def test_each_case_records_its_orientation_and_the_majority_is_the_training_orientation(tmp_path: Path):
    workspace = small_workspace(tmp_path, 1)
    fingerprint = extract_fingerprint(workspace, "1", total_samples=FEW)
    assert [c.orientation for c in fingerprint.cases] == ["LPS"] * 3  # write_case keeps the identity direction
    assert fingerprint.training_orientation() == "LPS"
    fingerprint.cases[0].orientation = "RAS"
    assert fingerprint.training_orientation() is None  # 2 of 3 is below the 80% needed
    assert fingerprint.training_orientation(min_share=0.5) == "LPS"


def test_a_fingerprint_written_before_orientations_were_recorded_still_loads():
    from _helpers_planning import uniform_fingerprint

    data = uniform_fingerprint(2, (1, 1, 1), (4, 4, 4)).to_dict()
    for case in data["cases"]:
        case.pop("orientation")
    fingerprint = Fingerprint.from_dict(data)
    assert fingerprint.cases[0].orientation is None and fingerprint.training_orientation() is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(colour="red"), "unknown field 'colour'"),
        (lambda d: d["cases"][0].update(spacng=[1, 1, 1]), r"unknown field 'cases\[0\].spacng'"),
        (lambda d: d["foreground_intensity_properties"]["0"].update(p99=1.0), "unknown field"),
        (lambda d: d["cases"][0].pop("spacing"), r"'cases\[0\].spacing' is missing"),
        (lambda d: d["cases"][0].update(spacing="1mm"), "should be list"),
        (lambda d: d["cases"][0].update(orientation=3), "should be str | None"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d.update(format="nnunet"), "field 'format'"),
        (lambda d: d.update(num_channels=5), "has 1 channels"),
    ],
    ids=["top-level", "case", "statistics", "missing", "type", "orientation", "version", "format", "channels"],
)
def test_fingerprint_json_rejects_unknown_missing_and_mistyped_fields(change, message):
    from _helpers_planning import uniform_fingerprint

    data = uniform_fingerprint(2, (1, 1, 1), (4, 4, 4)).to_dict()
    change(data)
    with pytest.raises(DatasetFormatError, match=message):
        Fingerprint.from_dict(data, source="fingerprint.json")


def test_nnunets_total_of_10e7_draws_is_spread_evenly_over_the_cases():
    assert (samples_per_case(3), samples_per_case(208), samples_per_case(10**9)) == (33_333_333, 480_769, 0)


def test_fingerprint_command_writes_the_file(tmp_path: Path, monkeypatch):
    import AutoSegNetLib.fingerprint.extract as extract

    monkeypatch.setattr(extract, "samples_per_case", lambda n, total=0: samples_per_case(n, FEW))
    root = small_workspace(tmp_path, 1).raw.parent
    assert cli_main(["fingerprint", "1", "--workspace", str(root), "-np", "1", "--progress", "none"]) == 0
    fingerprint = Fingerprint.load(root / "preprocessed" / "Dataset001_Small" / "fingerprint.json")
    assert (fingerprint.num_cases, fingerprint.foreground_samples_per_case) == (3, FEW // 3)


@pytest.mark.slow
def test_hippocampus_fingerprint_matches_the_reference_medians(tmp_path: Path):
    workspace = hippocampus_workspace(tmp_path)
    fingerprint = extract_fingerprint(workspace, "4", num_workers=2)
    assert fingerprint.num_cases == 208
    assert np.median(fingerprint.spacings, axis=0).tolist() == [1.0, 1.0, 1.0]
    assert np.median(fingerprint.shapes_after_crop, axis=0).tolist() == [36.0, 50.0, 35.0]
    assert fingerprint.foreground_samples_per_case == int(10e7 // 208)
