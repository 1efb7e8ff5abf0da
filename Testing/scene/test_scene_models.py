"""Models in the workspace and the versions of the annotate-correct-retrain loop."""

from __future__ import annotations

import json

import pytest

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models import versions
from Testing.scene._helpers_slicer import make_model


def test_a_trained_model_folder_is_found_with_labels_folds_and_dice(tmp_path):
    make_model(tmp_path / "results" / "Dataset007_Scene" / "AutoSegNet__plans__3d_fullres", folds=("0", "1"))
    [model] = versions.find_models(tmp_path)
    assert (model.dataset, model.configuration, model.folds) == ("Dataset007_Scene", "3d_fullres", ["0", "1"])
    assert model.labels == {1: "ball", 2: "box"} and model.channel_names == ["CT"]
    assert model.dice == pytest.approx(0.8) and model.version is None
    assert model.display_name() == "Dataset007_Scene · 3d_fullres · folds 0,1 · Dice 0.800"


def test_folders_without_a_final_checkpoint_are_not_models(tmp_path):
    folder = make_model(tmp_path / "results" / "D" / "AutoSegNet__plans__2d")
    (folder / "fold_all" / versions.CHECKPOINT).unlink()
    assert versions.find_models(tmp_path) == []


def test_each_snapshot_is_the_next_version_and_keeps_only_what_prediction_needs(tmp_path):
    working = make_model(tmp_path / "results" / "Dataset007_Scene" / "AutoSegNet__plans__3d_fullres")
    first = versions.snapshot_version(working, tmp_path / "versions", "Dataset007_Scene", "3d_fullres")
    second = versions.snapshot_version(working, tmp_path / "versions", "Dataset007_Scene", "3d_fullres",
                                     based_on=first.folder)
    assert (first.version, second.version) == ("v001", "v002")
    assert (second.folder / "fold_all" / versions.CHECKPOINT).read_bytes() == b"weights all"
    assert not (second.folder / "fold_all" / "checkpoint_latest.pth").exists()
    assert second.extra["based_on"] == str(first.folder) and second.dice == pytest.approx(0.8)
    assert [m.version for m in versions.find_models(tmp_path)] == [None, "v001", "v002"]


def test_fine_tuning_first_saves_an_unsaved_training_then_empties_the_fold(tmp_path):
    working = make_model(tmp_path / "results" / "D" / "AutoSegNet__plans__2d")
    versions.prepare_for_finetuning(working, "all", tmp_path / "versions", "D", "2d")
    assert not (working / "fold_all").exists()
    [saved] = [m for m in versions.find_models(tmp_path) if m.version]
    assert saved.extra["note"] == "saved before fine-tuning"


def test_fine_tuning_does_not_save_a_training_twice(tmp_path):
    working = make_model(tmp_path / "results" / "D" / "AutoSegNet__plans__2d")
    versions.snapshot_version(working, tmp_path / "versions", "D", "2d")
    versions.prepare_for_finetuning(working, "all", tmp_path / "versions", "D", "2d")
    assert [m.version for m in versions.find_models(tmp_path)] == ["v001"]


def test_snapshotting_a_folder_without_a_finished_training_is_refused(tmp_path):
    with pytest.raises(AutoSegNetError, match="no finished training"):
        versions.snapshot_version(tmp_path, tmp_path / "versions", "D", "2d")


@pytest.mark.parametrize(("summary", "dice"), [
    ({"foreground_mean": {"Dice": 0.7}}, 0.7),
    ({"mean_dice": 0.6}, 0.6),
    ({"mean": {"1": {"Dice": 0.5}, "2": {"Dice": 0.7}}}, 0.6),
    ({}, None),
])
def test_validation_dice_is_read_from_the_summary(tmp_path, summary, dice):
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "summary.json").write_text(json.dumps(summary))
    assert versions.validation_dice(tmp_path) == (pytest.approx(dice) if dice is not None else None)


def test_the_version_holding_a_training_is_found_and_a_new_training_is_not_held(tmp_path):
    working = make_model(tmp_path / "results" / "D" / "AutoSegNet__plans__2d")
    assert versions.version_holding(working, tmp_path / "versions") is None
    saved = versions.snapshot_version(working, tmp_path / "versions", "D", "2d")
    assert versions.version_holding(working, tmp_path / "versions").folder == saved.folder
    checkpoint = working / "fold_all" / versions.CHECKPOINT
    checkpoint.write_bytes(b"weights of a new training")
    assert versions.version_holding(working, tmp_path / "versions") is None


def test_version_save_twice_keeps_one_version(tmp_path):
    from AutoSegNetLib.cli import main

    make_model(tmp_path / "results" / "D" / "AutoSegNet__plans__2d")
    for _ in range(2):
        assert main(["--workspace", str(tmp_path), "version", "save", "D", "2d"]) == 0
    assert [m.version for m in versions.find_models(tmp_path) if m.version] == ["v001"]
