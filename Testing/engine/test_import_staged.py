"""Staged cases -> raw dataset: exact label composition, partial stagings never used, incremental, as a process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from AutoSegNetLib.dataset import RawDataset
from AutoSegNetLib.dataset.import_staged import ImportReport, import_staged
from AutoSegNetLib.dataset.staged import (
    ExportManifest,
    StagedCaseWriter,
    case_folder,
    content_hash,
    read_imported,
    read_staged_case,
    write_staged_case,
)
from AutoSegNetLib.dataset.staged_label import LabelLayer, compose_label
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry
from AutoSegNetLib.progress import ProgressReporter

REPO = Path(__file__).resolve().parents[2]
GEOMETRY = Geometry((2.5, 0.8, 0.7), (12.0, -30.0, 45.0), (-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0))
LABELS = {"ball": 1, "box": 2}


def case_arrays(seed: int, shape=(4, 6, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(-1000, 1000, shape).astype(np.int16), rng.integers(0, 3, shape).astype(np.uint8)


def stage(staging: Path, name: str, seed: int, stamp: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    image, label = case_arrays(seed)
    write_staged_case(case_folder(staging, name), name, stamp or f"stamp-{seed}", [image], GEOMETRY,
                      [LabelLayer(label)], [(0, 1, 1), (0, 2, 2)], "uint8", LABELS)
    return image, label


def manifest(staging: Path, cases: dict[str, str]) -> None:
    ExportManifest("Dataset007_Scene", "Scene", ["CT"], ".nii.gz", LABELS, cases, ["a warning"]).save(staging)


def test_compose_label_paints_entries_in_order_so_later_ones_win_and_clips_layers_to_the_grid():
    low = np.ones((1, 2, 3), np.int16)
    high = np.array([[[0, 5], [5, 0]]], np.uint8)  # at offset (0, 1, 2): sticks out on the right
    label = compose_label((1, 3, 4), "uint8", [LabelLayer(low), LabelLayer(high, (0, 1, 2))],
                          [(0, 1, 3), (1, 5, 7)])
    assert label.tolist() == [[[3, 3, 3, 0], [3, 3, 3, 7], [0, 0, 7, 0]]] and label.dtype == np.uint8


def test_a_whole_grid_layer_is_looked_up_including_negative_values_and_values_without_a_label():
    layer = np.array([[[-2, 0, 5, 9]]], np.int16)
    label = compose_label((1, 1, 4), "uint16", [LabelLayer(layer)], [(0, -2, 300), (0, 5, 1)])
    assert label.tolist() == [[[300, 0, 1, 0]]] and label.dtype == np.uint16


def test_no_entries_give_an_empty_label_map():
    assert compose_label((2, 2, 2), "uint8", [], []).tolist() == np.zeros((2, 2, 2)).tolist()


def test_a_staged_case_reads_back_voxel_for_voxel_with_its_geometry(tmp_path):
    image, label = stage(tmp_path, "case_0001", 1)
    staged = read_staged_case(case_folder(tmp_path, "case_0001"))
    assert (staged.name, staged.stamp, staged.geometry, staged.labels) == ("case_0001", "stamp-1", GEOMETRY, LABELS)
    [read_image] = staged.load_images()
    assert read_image.dtype == np.int16 and np.array_equal(read_image, image)
    assert np.array_equal(staged.load_label(), label)


def test_staging_a_case_again_replaces_the_older_files(tmp_path):
    stage(tmp_path, "case_0001", 1)
    image, _ = stage(tmp_path, "case_0001", 2)
    folder = case_folder(tmp_path, "case_0001")
    assert len(list(folder.glob("*.npy"))) == 2
    assert np.array_equal(read_staged_case(folder).load_images()[0], image)


@pytest.mark.parametrize("damage", ["no case.json", "truncated array", "missing array", "garbled case.json"])
def test_a_partly_written_case_is_not_a_staged_case(tmp_path, damage):
    stage(tmp_path, "case_0001", 1)
    folder = case_folder(tmp_path, "case_0001")
    array = sorted(folder.glob("*_0000.npy"))[0]
    if damage == "no case.json":
        (folder / "case.json").unlink()
    elif damage == "truncated array":
        array.write_bytes(array.read_bytes()[:-10])
    elif damage == "missing array":
        array.unlink()
    else:
        (folder / "case.json").write_text('{"format": 1, "case": ')
    assert read_staged_case(folder) is None


def test_import_writes_the_raw_dataset_with_hashes_and_events_and_deletes_what_it_consumed(tmp_path):
    staging, raw = tmp_path / "staging", tmp_path / "raw"
    arrays = {name: stage(staging, name, seed) for seed, name in enumerate(["case_0001", "case_0002"])}
    (case_folder(staging, "case_0001") / ".x.npy.tmp").write_bytes(b"interrupted write")  # ignored, then removed
    manifest(staging, {"case_0001": "stamp-0", "case_0002": "stamp-1"})
    events = io.StringIO()
    report = import_staged(staging, raw, ProgressReporter("json", events))
    assert (report.written, report.unchanged, report.removed, report.warnings) == (
        ["case_0001", "case_0002"], [], [], ["a warning"])
    dataset = RawDataset.open(raw / "Dataset007_Scene")
    data = json.loads((dataset.folder / "dataset.json").read_text())
    assert data["labels"] == {"background": 0, "ball": 1, "box": 2} and data["numTraining"] == 2
    assert data["autosegnet"]["case_hashes"] == report.case_hashes
    for case in dataset.training_cases():
        image, label, geometry = dataset.read_case(case)
        assert np.array_equal(image[0], arrays[case.name][0]) and np.array_equal(label, arrays[case.name][1])
        assert geometry.differences(GEOMETRY) == []
        assert report.case_hashes[case.name] == content_hash([arrays[case.name][0]], arrays[case.name][1],
                                                             GEOMETRY, LABELS)
    kinds = [json.loads(line)["event"] for line in events.getvalue().splitlines()]
    assert kinds == ["stage", "case", "case", "done"]
    assert not (staging / "cases").exists() or not any((staging / "cases").iterdir())
    assert read_imported(staging) == {"case_0001": "stamp-0", "case_0002": "stamp-1"}


def test_unchanged_content_is_not_rewritten_and_cases_that_left_are_removed(tmp_path):
    staging, raw = tmp_path / "staging", tmp_path / "raw"
    for seed, name in enumerate(["case_0001", "case_0002", "case_0003"]):
        stage(staging, name, seed)
    manifest(staging, {"case_0001": "stamp-0", "case_0002": "stamp-1", "case_0003": "stamp-2"})
    import_staged(staging, raw)
    label_file = raw / "Dataset007_Scene" / "labelsTr" / "case_0001.nii.gz"
    stamp = label_file.stat().st_mtime_ns
    stage(staging, "case_0001", 0, "stamp-0b")  # staged again, same voxels
    stage(staging, "case_0002", 9, "stamp-9")  # new voxels
    manifest(staging, {"case_0001": "stamp-0b", "case_0002": "stamp-9"})  # case_0003 left the training set
    report = import_staged(staging, raw)
    assert (report.written, report.unchanged, report.removed) == (["case_0002"], ["case_0001"], ["case_0003"])
    assert label_file.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (raw / "Dataset007_Scene" / "imagesTr").iterdir()) == [
        "case_0001_0000.nii.gz", "case_0002_0000.nii.gz"]
    manifest(staging, {"case_0001": "stamp-0b", "case_0002": "stamp-9"})  # nothing staged: all stay as they are
    again = import_staged(staging, raw)
    assert (again.written, again.unchanged) == ([], ["case_0001", "case_0002"])


def test_a_case_with_neither_staged_data_nor_exported_files_is_an_error_naming_it(tmp_path):
    manifest(tmp_path, {"case_0001": "stamp-0"})
    with pytest.raises(AutoSegNetError, match="Case case_0001: nothing is staged.*Export the training set again"):
        import_staged(tmp_path, tmp_path / "raw")


def test_a_case_staged_by_another_export_is_refused(tmp_path):
    stage(tmp_path, "case_0001", 0, "newer")
    manifest(tmp_path, {"case_0001": "older"})
    with pytest.raises(AutoSegNetError, match="staged by another export"):
        import_staged(tmp_path, tmp_path / "raw")


def test_an_unfinished_staging_is_not_imported(tmp_path):
    stage(tmp_path, "case_0001", 0)
    with pytest.raises(AutoSegNetError, match="export.json is missing"):
        import_staged(tmp_path, tmp_path / "raw")


def test_the_command_runs_as_a_process_with_json_progress_and_a_report(tmp_path):
    staging = tmp_path / "staging"
    image, label = stage(staging, "case_0001", 0)
    manifest(staging, {"case_0001": "stamp-0"})
    command = [sys.executable, "-m", "AutoSegNetLib", "import-staged", str(staging), "--report",
               str(tmp_path / "report.json"), "--workspace", str(tmp_path / "ws"), "--progress", "json"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["stage", "case", "done"]
    assert events[1] | {"time": 0} == {"event": "case", "time": 0, "stage": "import-staged", "case": "case_0001",
                                       "index": 1, "total": 1, "status": "written"}
    report = ImportReport.load(tmp_path / "report.json")
    assert report.written == ["case_0001"] and report.warnings == ["a warning"]
    cases = RawDataset.open(tmp_path / "ws" / "raw" / "Dataset007_Scene")
    read_image, read_label, _ = cases.read_case(cases.training_cases()[0])
    assert np.array_equal(read_image[0], image) and np.array_equal(read_label, label)


@pytest.mark.parametrize("chunk_bytes", [1, 64, 120 + 128, 10_000])
def test_a_case_written_in_chunks_is_complete_only_after_the_last_one(tmp_path, chunk_bytes):
    image, label = case_arrays(3)  # 120 int16 voxels + 120 uint8 voxels
    writer = StagedCaseWriter(tmp_path, "case_0001", "s", [image], GEOMETRY, [LabelLayer(label)], [(0, 1, 1)],
                              "uint8", LABELS, chunk_bytes=chunk_bytes)
    calls = 1
    while writer.write_next():
        assert read_staged_case(tmp_path) is None and 0 < writer.fraction < 1
        calls += 1
    assert calls == max(1, -(-(image.nbytes + label.nbytes) // chunk_bytes))
    staged = read_staged_case(tmp_path)
    assert np.array_equal(staged.load_images()[0], image) and np.array_equal(staged.load_label(), label == 1)
    assert sorted(p.name.endswith(".npy") or p.name == "case.json" for p in tmp_path.iterdir()) == [True] * 3


def test_an_aborted_writer_leaves_the_older_staging_as_it_was(tmp_path):
    image, _ = stage(tmp_path, "case_0001", 1)
    folder = case_folder(tmp_path, "case_0001")
    other, label = case_arrays(2)
    writer = StagedCaseWriter(folder, "case_0001", "s2", [other], GEOMETRY, [LabelLayer(label)], [(0, 1, 1)],
                              "uint8", LABELS, chunk_bytes=50)
    writer.write_next()
    writer.write_next()
    writer.abort()
    staged = read_staged_case(folder)
    assert staged.stamp == "stamp-1" and np.array_equal(staged.load_images()[0], image)
    assert len(list(folder.iterdir())) == 3
