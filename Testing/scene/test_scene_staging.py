"""Export split in two: GUI-thread staging (incremental, atomic, step by step) + the engine's ``import-staged``.

The reference below is the export as it was before the split (Slicer's labelmap export on the volume grid,
hashing and writing on the GUI thread): the split export must write the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import slicer
from AutoSegNetSceneLib import commands, staging, volumes
from AutoSegNetSceneLib.cases import string_array, temporary_nodes
from AutoSegNetSceneLib.export import apply_export_report, export_training_set, load_export_report
from AutoSegNetSceneLib.label_layers import label_grid_warning
from AutoSegNetSceneLib.labels import normalise_name
from AutoSegNetSceneLib.settings import DatasetSettings
from AutoSegNetSceneLib.staging import StagedExport, staging_folder
from AutoSegNetSceneLib.synthetic import add_synthetic_case, synthetic_arrays

from AutoSegNetLib.cli import build_parser, main
from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.dataset.import_staged import import_staged
from AutoSegNetLib.dataset.staged import EXPORT_FILE, ExportManifest, case_folder
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import io_for
from Testing.scene._helpers_staging import SHAPE, add_every_kind_of_case, set_segment_mask


def settings(workspace) -> DatasetSettings:
    return DatasetSettings(workspace, 7, "Scene", ("CT",))


def add_cases(scene, training_set, count: int) -> list:
    nodes = [add_synthetic_case(scene, f"p{i}", seed=i) for i in range(count)]
    for volume, segmentation, _ in nodes:
        training_set.add_case([volume], segmentation)
    return nodes


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----- the export before the split, as the reference ---------------------------------------------------------
def reference_export(training_set, dataset: DatasetSettings) -> list[str]:
    """Today's export in one go on the GUI thread; returns its warnings."""
    cases = training_set.cases()
    table = training_set.labels
    for case in cases:
        table.add_names(case.segment_names)
    io, folder, warnings, hashes = io_for(".nii.gz"), dataset.raw_folder, [], {}
    for case in cases:
        images = [np.array(volumes.volume_array(v)) for v in case.volumes]
        label = reference_label(training_set, case, table)
        warning = label_grid_warning(training_set, case)
        warnings += [warning] if warning else []
        geometry = volumes.volume_geometry(case.volume)
        digest = hashlib.sha1(json.dumps({"geometry": [geometry.spacing, geometry.origin, geometry.direction],
                                          "labels": table.as_dict()}).encode())
        for array in [*images, label]:
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        hashes[case.name] = digest.hexdigest()
        io.write_image(images[0], folder / "imagesTr" / f"{case.name}_0000.nii.gz", geometry)
        io.write_seg(label, folder / "labelsTr" / f"{case.name}.nii.gz", geometry)
    DatasetJson(channel_names={"0": "CT"}, labels=table.dataset_labels(), num_training=len(hashes),
                file_ending=".nii.gz", metadata={
                    "name": "Scene", "description": "Training cases exported from a 3D Slicer scene by the AutoSegNet "
                    "module.", "autosegnet": {"source": "3D Slicer", "case_hashes": hashes}}).save(folder)
    return warnings


def reference_label(training_set, case, table) -> np.ndarray:
    scene, volume = training_set.scene, case.volume
    with training_set.as_segmentation(case.label_node) as segmentation_node:
        segmentation = segmentation_node.GetSegmentation()
        by_value = {}
        for index in range(segmentation.GetNumberOfSegments()):
            name = normalise_name(segmentation.GetNthSegment(index).GetName())
            if name in table:
                by_value.setdefault(table.value(name), []).append(segmentation.GetNthSegmentID(index))
        ordered = [(value, segment_id) for value in sorted(by_value) for segment_id in by_value[value]]
        if not ordered:
            return np.zeros(volumes.dimensions_zyx(volume), np.uint8)
        with temporary_nodes(scene):
            labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "AutoSegNet temporary")
            assert training_set.logic.ExportSegmentsToLabelmapNode(
                segmentation_node, string_array([s for _, s in ordered]), labelmap, volume,
                slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
            exported = np.array(volumes.volume_array(labelmap))
    lookup = np.zeros(len(ordered) + 1, np.uint16)
    lookup[1:] = [value for value, _ in ordered]
    return lookup[exported.astype(np.int64)].astype(np.uint8 if len(table) < 256 else np.uint16)


def test_the_split_export_writes_the_same_bytes_as_the_export_before_the_split(a_scene, a_training_set, tmp_path):
    for channels, label_node in add_every_kind_of_case(a_scene):
        a_training_set.add_case(channels, label_node)
    report = export_training_set(a_training_set, settings(tmp_path / "split"))
    warnings = reference_export(a_training_set, settings(tmp_path / "before"))
    split, before = settings(tmp_path / "split").raw_folder, settings(tmp_path / "before").raw_folder
    assert folder_digest(split) == folder_digest(before) and len(folder_digest(split)) == 19
    assert report.warnings == warnings and len(warnings) == 2


# ----- incremental staging --------------------------------------------------------------------------------
def test_only_cases_whose_voxels_or_segments_changed_are_staged_again(a_scene, a_training_set, a_workspace):
    nodes = add_cases(a_scene, a_training_set, 4)
    export_training_set(a_training_set, settings(a_workspace))
    changed, _ = synthetic_arrays(seed=99)
    slicer.util.updateVolumeFromArray(nodes[1][0], changed)
    segmentation = nodes[2][1]
    mask = np.zeros(SHAPE, np.uint8)
    mask[1:4, 2:9, 2:8] = 1
    set_segment_mask(a_scene, segmentation, segmentation.GetSegmentation().GetNthSegmentID(0), mask, nodes[2][0])
    result = StagedExport(a_training_set, settings(a_workspace)).run()
    assert (result.staged, result.pending, result.unchanged) == (["case_0002", "case_0003"], [],
                                                                 ["case_0001", "case_0004"])
    report = import_staged(result.staging_folder, settings(a_workspace).workspace.raw)
    assert (report.written, report.unchanged) == (["case_0002", "case_0003"], ["case_0001", "case_0004"])
    nothing = StagedExport(a_training_set, settings(a_workspace)).run()
    assert (nothing.staged, len(nothing.unchanged)) == ([], 4)


def test_a_labelmap_edited_in_place_is_staged_again(a_scene, a_training_set, a_workspace):
    volume, _, labels = add_synthetic_case(a_scene, "p1")
    labelmap = a_scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "lm")
    slicer.util.updateVolumeFromArray(labelmap, labels)
    volumes.copy_placement(volume, labelmap)
    a_training_set.add_case([volume], labelmap)
    export_training_set(a_training_set, settings(a_workspace))
    slicer.util.arrayFromVolume(labelmap)[0, 0, 0] = 2
    slicer.util.arrayFromVolumeModified(labelmap)
    assert StagedExport(a_training_set, settings(a_workspace)).run().staged == ["case_0001"]


def test_staged_but_not_imported_cases_are_not_staged_twice(a_scene, a_training_set, a_workspace):
    add_cases(a_scene, a_training_set, 2)
    first = StagedExport(a_training_set, settings(a_workspace)).run()
    second = StagedExport(a_training_set, settings(a_workspace)).run()
    assert (first.staged, second.staged, second.pending) == (["case_0001", "case_0002"], [],
                                                             ["case_0001", "case_0002"])


def test_a_new_slicer_session_stages_every_case_again_and_the_import_rewrites_none(
        a_scene, a_training_set, a_workspace, monkeypatch):
    add_cases(a_scene, a_training_set, 2)
    export_training_set(a_training_set, settings(a_workspace))
    monkeypatch.setattr(staging, "SESSION", "another session")
    result = StagedExport(a_training_set, settings(a_workspace)).run()
    report = import_staged(result.staging_folder, settings(a_workspace).workspace.raw)
    assert (result.staged, report.written, report.unchanged) == (["case_0001", "case_0002"], [],
                                                                 ["case_0001", "case_0002"])


@pytest.mark.parametrize("damage", ["no case.json", "truncated array"])
def test_a_partly_written_staging_is_ignored_and_the_case_staged_again(a_scene, a_training_set, a_workspace, damage):
    nodes = add_cases(a_scene, a_training_set, 2)
    StagedExport(a_training_set, settings(a_workspace)).run()
    folder = case_folder(staging_folder(settings(a_workspace)), "case_0001")
    if damage == "no case.json":
        (folder / "case.json").unlink()
    else:
        array = sorted(folder.glob("*_0000.npy"))[0]
        array.write_bytes(array.read_bytes()[:-100])
    result = StagedExport(a_training_set, settings(a_workspace)).run()
    assert (result.staged, result.pending) == (["case_0001"], ["case_0002"])
    import_staged(result.staging_folder, settings(a_workspace).workspace.raw)
    image = io_for(".nii.gz").read_images([settings(a_workspace).raw_folder / "imagesTr" / "case_0001_0000.nii.gz"])
    assert np.array_equal(image[0][0], volumes.volume_array(nodes[0][0]))


def test_an_unfinished_staging_cannot_be_imported(a_scene, a_training_set, a_workspace):
    add_cases(a_scene, a_training_set, 2)
    StagedExport(a_training_set, settings(a_workspace)).run()
    export = StagedExport(a_training_set, settings(a_workspace))
    assert export.step() and not (export.folder / EXPORT_FILE).exists()
    with pytest.raises(AutoSegNetError, match="export.json is missing"):
        import_staged(export.folder, settings(a_workspace).workspace.raw)


def test_each_step_writes_at_most_one_chunk_and_says_what_it_does(a_scene, a_training_set, a_workspace,
                                                                  monkeypatch):
    add_cases(a_scene, a_training_set, 3)
    written = []
    export = StagedExport(a_training_set, settings(a_workspace), chunk_bytes=4096)
    messages, fractions = [], []
    while export.step():
        messages.append(export.message)
        fractions.append(export.fraction)
        written.append(sum(p.stat().st_size for p in export.folder.rglob("*") if p.suffix in (".npy", ".partial")))
    # per case (a 12x24x20 int16 volume + one int16 segment layer: 23040 bytes): 1 step to take its arrays,
    # 6 steps of at most 4096 bytes, the last also checking that it did not change and writing case.json
    assert messages == ["Checking the cases"] + [f"Staging case_000{i} ({i}/3)" for i in (1, 2, 3) for _ in range(7)]
    assert max(np.diff([0, *written])) <= 4096 + 128  # + an .npy header
    assert fractions == sorted(fractions) and export.fraction == 1.0 and export.result.staged == [
        "case_0001", "case_0002", "case_0003"]
    assert not export.step()


def test_a_case_edited_while_it_is_written_is_staged_again_with_its_new_voxels(a_scene, a_training_set, a_workspace):
    nodes = add_cases(a_scene, a_training_set, 1)
    export = StagedExport(a_training_set, settings(a_workspace), chunk_bytes=4096)
    for _ in range(3):  # plan, take the arrays, write the first chunk
        export.step()
    slicer.util.arrayFromVolume(nodes[0][0])[:] = 7
    slicer.util.arrayFromVolumeModified(nodes[0][0])
    result = export.run()
    import_staged(result.staging_folder, settings(a_workspace).workspace.raw)
    image = io_for(".nii.gz").read_images([settings(a_workspace).raw_folder / "imagesTr" / "case_0001_0000.nii.gz"])
    assert np.all(image[0] == 7)


def test_a_case_that_left_the_training_set_loses_its_staging(a_scene, a_training_set, a_workspace):
    nodes = add_cases(a_scene, a_training_set, 2)
    StagedExport(a_training_set, settings(a_workspace)).run()
    a_training_set.remove_case(nodes[1][0])
    result = StagedExport(a_training_set, settings(a_workspace)).run()
    assert not case_folder(result.staging_folder, "case_0002").exists()
    assert list(ExportManifest.load(result.staging_folder).cases) == ["case_0001"]


def test_a_failed_step_ends_the_export(a_scene, a_training_set, a_workspace):
    first, segmentation, _ = add_synthetic_case(a_scene, "t1")
    a_training_set.add_case([first], segmentation)
    export = StagedExport(a_training_set, DatasetSettings(a_workspace, 7, "Scene", ("T1", "T2")))
    with pytest.raises(AutoSegNetError, match="has 1 channel volume"):
        export.run()
    with pytest.raises(AutoSegNetError, match="start a new export"):
        export.step()


# ----- the background half as the module runs it ------------------------------------------------------------
def test_the_module_flow_stages_then_runs_the_engine_command_and_applies_its_report(
        a_scene, a_training_set, a_workspace, tmp_path, capsys):
    nodes = add_cases(a_scene, a_training_set, 2)
    dataset = settings(a_workspace)
    export = StagedExport(a_training_set, dataset)
    while export.step():
        pass
    args = commands.import_staged(dataset, export.result.staging_folder, tmp_path / "report.json")
    assert build_parser(only="import-staged").parse_args(args).progress == "json"
    capsys.readouterr()
    assert main(args) == 0  # as the job runs it, in this process (Testing/engine runs it as a process)
    events = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert events == ["stage", "case", "case", "done"]
    report = load_export_report(tmp_path / "report.json")
    assert report.written == ["case_0001", "case_0002"] and "2 written" in report.summary()
    apply_export_report(a_training_set, report)
    assert [c.status for c in a_training_set.cases()] == ["exported", "exported"]
    assert nodes[0][0].GetAttribute("AutoSegNet.ExportHash") == report.case_hashes["case_0001"]
