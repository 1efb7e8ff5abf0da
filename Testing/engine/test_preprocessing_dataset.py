"""The preprocessing stage on small real datasets: output layout, incremental re-runs, the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _helpers_preprocessing import (
    SHARED_DATA,
    brain_raw,
    configuration,
    drive_raw,
    hippocampus_plans,
    hippocampus_raw,
    isbi_raw,
    link,
    plans_for,
)

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.preprocessing import PreprocessedDataset, preprocess_dataset
from AutoSegNetLib.preprocessing.incremental import STATE_FILE
from AutoSegNetLib.preprocessing.manifest import MANIFEST_FILE
from AutoSegNetLib.preprocessing.preprocess_dataset import LOCK_FILE
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.workspace import Workspace

HIPPO = "Dataset004_Hippocampus"


@pytest.fixture
def a_workspace(tmp_path) -> Workspace:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA}")
    return Workspace.at(tmp_path / "ws").create()


@pytest.fixture
def a_hippocampus_workspace(a_workspace) -> Workspace:
    """Four Hippocampus cases and the reference plans (2d + 3d_fullres at 1 mm)."""
    hippocampus_raw(a_workspace.raw, 4)
    hippocampus_plans().save(a_workspace.preprocessed / HIPPO / "plans.json")
    return a_workspace


def run(ws: Workspace, configurations=("2d", "3d_fullres"), workers: int = 1) -> dict:
    return preprocess_dataset(ws, HIPPO, list(configurations), workers, ProgressReporter("none"))


def written(summary: dict) -> dict[str, list[str]]:
    return {conf: entry["preprocessed"] for conf, entry in summary.items() if isinstance(entry, dict)}


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if not p.name.startswith(".")}


def cases_of(ws: Workspace) -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in (ws.raw / HIPPO / "labelsTr").iterdir())


def test_every_case_is_written_for_every_configuration(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    summary = run(ws)
    names = cases_of(ws)
    assert written(summary) == {"2d": names, "3d_fullres": names}
    for identifier in ("plans_2d", "plans_3d_fullres"):
        dataset = PreprocessedDataset(ws.preprocessed / HIPPO / identifier)
        assert dataset.case_names == names
        data, seg, props = dataset.load_case(names[0])
        assert isinstance(data, np.memmap) and data.dtype == np.float32 and seg.dtype == np.int16
        assert data.shape == seg.shape and data.shape[0] == 1
        assert set(props["class_locations"]) == {"1", "2"}
        assert props["configuration"] == identifier.removeprefix("plans_")
        for key, points in props["class_locations"].items():
            assert points.dtype == np.int32 and (seg[tuple(np.asarray(points).T)] == int(key)).all()


def test_configurations_with_identical_output_share_files_through_hard_links(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    name = cases_of(ws)[0]
    a = ws.preprocessed / HIPPO / "plans_2d" / f"{name}.npy"
    b = ws.preprocessed / HIPPO / "plans_3d_fullres" / f"{name}.npy"
    assert a.stat().st_ino == b.stat().st_ino


def test_a_rerun_with_nothing_changed_touches_nothing(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    folder = ws.preprocessed / HIPPO / "plans_3d_fullres"
    before = mtimes(folder)
    summary = run(ws)
    assert written(summary) == {"2d": [], "3d_fullres": []}
    assert summary["3d_fullres"]["unchanged"] == 4
    assert mtimes(folder) == before


def test_an_added_case_is_the_only_one_processed(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    source = sorted((SHARED_DATA / "Task04_Hippocampus" / "imagesTr").iterdir())[10]
    link(source, ws.raw / HIPPO / "imagesTr" / source.name.replace(".nii.gz", "_0000.nii.gz"))
    link(SHARED_DATA / "Task04_Hippocampus" / "labelsTr" / source.name, ws.raw / HIPPO / "labelsTr" / source.name)
    new = source.name[: -len(".nii.gz")]
    assert written(run(ws)) == {"2d": [new], "3d_fullres": [new]}


def test_a_changed_label_file_is_the_only_one_processed_and_a_touched_file_is_not(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    name = cases_of(ws)[1]
    label = ws.raw / HIPPO / "labelsTr" / f"{name}.nii.gz"
    original = label.resolve()
    label.unlink()
    shutil.copyfile(original, label)  # same bytes, new mtime: hashed, found equal, not reprocessed
    assert written(run(ws)) == {"2d": [], "3d_fullres": []}
    image = sitk.ReadImage(str(label))
    array = sitk.GetArrayFromImage(image)
    array[array == 2] = 1
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(label))
    summary = run(ws)
    assert written(summary) == {"2d": [name], "3d_fullres": [name]}
    _, seg, props = PreprocessedDataset(ws.preprocessed / HIPPO / "plans_3d_fullres").load_case(name)
    assert 2 not in np.unique(seg) and len(props["class_locations"]["2"]) == 0


def test_a_removed_case_is_removed_from_every_configuration(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    name = cases_of(ws)[0]
    (ws.raw / HIPPO / "imagesTr" / f"{name}_0000.nii.gz").unlink()
    (ws.raw / HIPPO / "labelsTr" / f"{name}.nii.gz").unlink()
    summary = run(ws)
    assert summary["2d"]["removed"] == [name] == summary["3d_fullres"]["removed"]
    for identifier in ("plans_2d", "plans_3d_fullres"):
        assert not list((ws.preprocessed / HIPPO / identifier).glob(f"{name}*"))


def test_a_changed_plan_spacing_redoes_that_configuration_only(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    plans = hippocampus_plans()
    plans.configurations["3d_fullres"].spacing = [1.5, 1.5, 1.5]
    plans.save(ws.preprocessed / HIPPO / "plans.json")
    summary = run(ws)
    assert written(summary) == {"2d": [], "3d_fullres": cases_of(ws)}
    data, _, props = PreprocessedDataset(ws.preprocessed / HIPPO / "plans_3d_fullres").load_case(cases_of(ws)[0])
    assert props["spacing_after_resampling"] == [1.5, 1.5, 1.5]
    assert list(data.shape[1:]) == props["shape_after_resampling"]


def test_a_changed_batch_size_does_not_redo_anything(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    plans = hippocampus_plans()
    plans.configurations["3d_fullres"].batch_size = 4
    plans.configurations["3d_fullres"].patch_size = [32, 48, 32]
    plans.save(ws.preprocessed / HIPPO / "plans.json")
    assert written(run(ws)) == {"2d": [], "3d_fullres": []}


def test_a_lost_state_file_falls_back_to_the_case_properties(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    (ws.preprocessed / HIPPO / "plans_3d_fullres" / STATE_FILE).unlink()
    assert written(run(ws)) == {"2d": [], "3d_fullres": []}


def test_a_deleted_array_file_is_written_again(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws)
    name = cases_of(ws)[2]
    (ws.preprocessed / HIPPO / "plans_3d_fullres" / f"{name}_seg.npy").unlink()
    assert written(run(ws)) == {"2d": [], "3d_fullres": [name]}


def test_two_workers_give_the_same_arrays_as_one(a_hippocampus_workspace, tmp_path):
    ws = a_hippocampus_workspace
    run(ws, ["3d_fullres"], workers=2)
    other = Workspace.at(tmp_path / "other").create()
    hippocampus_raw(other.raw, 4)
    hippocampus_plans().save(other.preprocessed / HIPPO / "plans.json")
    run(other, ["3d_fullres"], workers=1)
    a = PreprocessedDataset(ws.preprocessed / HIPPO / "plans_3d_fullres")
    b = PreprocessedDataset(other.preprocessed / HIPPO / "plans_3d_fullres")
    for name in a.case_names:
        for x, y in zip(a.load_case(name)[:2], b.load_case(name)[:2]):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(("build", "conf", "shape"), [
    (isbi_raw, configuration("2d", [1.0, 1.0], [512, 512], ["ZScoreNormalization"]), (1, 1, 512, 512)),
    (drive_raw, configuration("2d", [2.0, 2.0], [256, 256], ["RGBTo01Normalization"] * 3), (3, 1, 292, 282)),
    (brain_raw, configuration("3d_fullres", [6.5, 1.5625, 1.5625], [16, 64, 64], ["ZScoreNormalization"]), None),
], ids=["isbi-png", "drive-rgb", "brain-nrrd"])
def test_2d_rgb_and_anisotropic_datasets_are_preprocessed(a_workspace, build, conf, shape):
    folder = build(a_workspace.raw)
    plans_for(folder.name, [conf]).save(a_workspace.preprocessed / folder.name / "plans.json")
    summary = preprocess_dataset(a_workspace, folder.name, [conf.name], 1)
    assert summary[conf.name]["preprocessed"] and summary[conf.name]["cases"] == len(summary[conf.name]["preprocessed"])
    dataset = PreprocessedDataset(a_workspace.preprocessed / folder.name / conf.data_identifier)
    data, seg, props = dataset.load_case(dataset.case_names[0])
    if shape is not None:
        assert data.shape == shape
    else:  # anisotropic brain: slices kept, in-plane halved
        crop = props["shape_after_cropping"]
        assert data.shape[1:] == (crop[0], round(crop[1] / 2), round(crop[2] / 2))
    assert set(np.unique(seg)) <= {-1, 0, 1}


def test_missing_plans_say_to_plan_first(a_workspace):
    hippocampus_raw(a_workspace.raw, 1)
    with pytest.raises(AutoSegNetError, match=r"No plans at .*plans.json. Run `autosegnet plan"):
        preprocess_dataset(a_workspace, "4", ["3d_fullres"], 1)


def test_an_unknown_configuration_lists_the_planned_ones(a_hippocampus_workspace):
    with pytest.raises(AutoSegNetError, match=r"'3d_fulres'.*Did you mean '3d_fullres'"):
        run(a_hippocampus_workspace, ["3d_fulres"])


def test_the_cli_preprocesses_and_reports_json_events(a_hippocampus_workspace, capsys):
    ws = a_hippocampus_workspace
    code = main(["preprocess", "Hippocampus", "-c", "3d_fullres", "-np", "1", "--progress", "json",
                 "--workspace", str(ws.raw.parent)])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["stage"] + ["case"] * 4 + ["done"]
    assert events[1]["total"] == 4 and events[-1]["stage"] == "preprocess"
    assert PreprocessedDataset(ws.preprocessed / HIPPO / "plans_3d_fullres").case_names == cases_of(ws)


def test_the_cli_defaults_to_every_planned_configuration(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    assert main(["preprocess", "4", "-np", "1", "--progress", "none", "--workspace", str(ws.raw.parent)]) == 0
    assert {p.name for p in (ws.preprocessed / HIPPO).iterdir() if p.is_dir()} == {"plans_2d", "plans_3d_fullres"}


def test_progress_events_name_each_processed_case(a_hippocampus_workspace):
    stream = io.StringIO()
    preprocess_dataset(a_hippocampus_workspace, HIPPO, ["3d_fullres"], 1, ProgressReporter("json", stream))
    cases = [json.loads(x)["case"] for x in stream.getvalue().splitlines() if json.loads(x)["event"] == "case"]
    assert sorted(cases) == cases_of(a_hippocampus_workspace)


def test_state_file_is_not_listed_as_a_case(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    run(ws, ["3d_fullres"])
    folder = ws.preprocessed / HIPPO / "plans_3d_fullres"
    assert (folder / STATE_FILE).is_file()
    assert PreprocessedDataset(folder).case_names == cases_of(ws)
    kept = {STATE_FILE, MANIFEST_FILE, LOCK_FILE}  # the cache, the completion record, the (released) lock
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp") or p.startswith(".") and p not in kept]


def test_a_bad_case_fails_the_run_naming_the_case(a_hippocampus_workspace):
    ws = a_hippocampus_workspace
    name = cases_of(ws)[0]
    label = ws.raw / HIPPO / "labelsTr" / f"{name}.nii.gz"
    image = sitk.ReadImage(str(label.resolve()))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 5
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    label.unlink()
    sitk.WriteImage(bad, str(label))
    with pytest.raises(AutoSegNetError, match=rf"case '{name}'.*values \[5\] that dataset.json does not declare"):
        run(ws, ["3d_fullres"])
