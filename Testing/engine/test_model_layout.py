"""The model-folder layout (:mod:`AutoSegNetLib.layout`): nnU-Net's names, one fold spelling, names round-trip."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import (
    CHECKPOINT_KINDS,
    checkpoint_file_name,
    checkpoint_member,
    checkpoint_path,
    crossval_folder_name,
    fold_folder_name,
    fold_key,
    folds_with_checkpoint,
    model_folder_name,
    parse_checkpoint_file_name,
    parse_fold_folder_name,
    parse_folds,
    parse_model_folder_name,
    split_model_folder_name,
    validation_folder,
)


@pytest.mark.parametrize("fold", [0, "0", "00", " 0 "])
def test_fold_zero_in_any_spelling_is_fold_0(fold):
    assert fold_folder_name(fold) == "fold_0"


def test_fold_all_is_fold_all():
    assert fold_folder_name("all") == "fold_all"


def test_fold_twelve_is_fold_12():
    assert fold_folder_name(12) == "fold_12"


@pytest.mark.parametrize("fold", ["-1", "x", "", "1.5", "All", "²"])
def test_a_fold_that_is_neither_a_number_nor_all_is_refused(fold):
    with pytest.raises(AutoSegNetError, match="is not a fold number or 'all'"):
        fold_key(fold)


def test_folds_are_parsed_into_their_one_spelling():
    assert parse_folds([0, "01", "all"]) == ["0", "1", "all"]
    assert parse_folds("all") == ["all"]
    assert parse_folds(3) == ["3"]
    assert parse_folds(None) is None


@pytest.mark.parametrize("fold", ["0", "4", "12", "all"])
def test_fold_folder_names_round_trip(fold):
    assert parse_fold_folder_name(fold_folder_name(fold)) == fold


@pytest.mark.parametrize("name", ["fold_01", "fold_x", "fold_", "folds_0", "validation"])
def test_names_training_never_writes_are_not_fold_folders(name):
    assert parse_fold_folder_name(name) is None


def test_checkpoint_kinds_are_final_best_latest():
    assert CHECKPOINT_KINDS == ("final", "best", "latest")
    assert [checkpoint_file_name(k) for k in CHECKPOINT_KINDS] == [
        "checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"
    ]


@pytest.mark.parametrize("kind", CHECKPOINT_KINDS)
def test_checkpoint_file_names_round_trip(kind):
    assert parse_checkpoint_file_name(checkpoint_file_name(kind)) == kind


@pytest.mark.parametrize("name", ["checkpoint_other.pth", "final", "checkpoint_final.pt", "model_final.pth"])
def test_other_file_names_are_not_checkpoints(name):
    assert parse_checkpoint_file_name(name) is None


def test_an_unknown_checkpoint_kind_is_refused():
    with pytest.raises(AutoSegNetError, match=r"Checkpoint 'last' is not one of final, best, latest\."):
        checkpoint_file_name("last")


def test_model_folder_name_is_autosegnet_plans_configuration():
    assert model_folder_name("nnUNetPlans", "3d_fullres") == "AutoSegNet__nnUNetPlans__3d_fullres"


@pytest.mark.parametrize("plans, configuration", [("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d"),
                                                  ("My_Plans", "3d_cascade_fullres")])
def test_model_folder_names_round_trip(plans, configuration):
    assert parse_model_folder_name(model_folder_name(plans, configuration)) == (plans, configuration)


def test_an_nnunet_trainer_folder_is_split_but_is_not_ours():
    name = "nnUNetTrainer__nnUNetPlans__3d_lowres"
    assert split_model_folder_name(name) == ("nnUNetTrainer", "nnUNetPlans", "3d_lowres")
    assert parse_model_folder_name(name) is None


@pytest.mark.parametrize("name", ["AutoSegNet__3d_fullres", "plans.json", "AutoSegNet____3d_fullres"])
def test_names_without_three_parts_are_not_model_folders(name):
    assert split_model_folder_name(name) is None
    assert parse_model_folder_name(name) is None


def test_paths_inside_a_model_folder():
    folder = Path("results") / "Dataset004_Hippocampus" / "AutoSegNet__nnUNetPlans__3d_fullres"
    assert checkpoint_path(folder, 0, "best") == folder / "fold_0" / "checkpoint_best.pth"
    assert checkpoint_member("all", "final") == "fold_all/checkpoint_final.pth"
    assert validation_folder(folder, "2") == folder / "fold_2" / "validation"
    assert crossval_folder_name(["0", "1"]) == "crossval_folds_0_1"


def test_folds_with_a_checkpoint_come_in_numeric_order_with_all_last(tmp_path):
    for fold, kind in [("10", "final"), ("2", "final"), ("all", "final"), ("3", "latest"), ("01", "final")]:
        (tmp_path / f"fold_{fold}").mkdir()
        (tmp_path / f"fold_{fold}" / f"checkpoint_{kind}.pth").write_bytes(b"")
    assert folds_with_checkpoint(tmp_path, "final") == ["2", "10", "all"]
    assert folds_with_checkpoint(tmp_path, "latest") == ["3"]


def test_importing_the_layout_does_not_import_torch():
    code = "import sys, AutoSegNetLib.layout; print('torch' in sys.modules, 'numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split() == ["False", "False"]
