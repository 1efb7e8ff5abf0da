"""Workspace: folder resolution from options/environment, datasets addressed by ID or name."""

from __future__ import annotations

from pathlib import Path

import pytest

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.workspace import Workspace


@pytest.fixture
def a_workspace(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path).create()
    for name in ("Dataset004_Hippocampus", "Dataset120_ISBI_Membrane"):
        (ws.raw / name).mkdir()
    (ws.results / "Dataset900_SyntheticEllipsoids").mkdir()
    (ws.raw / "not_a_dataset").mkdir()
    return ws


@pytest.mark.parametrize("ident", ["4", 4, "004", "Dataset004_Hippocampus", "Hippocampus", " 4 "])
def test_datasets_are_found_by_id_or_name(a_workspace, ident):
    assert a_workspace.resolve_dataset(ident) == "Dataset004_Hippocampus"
    assert a_workspace.raw_dataset(ident) == a_workspace.raw / "Dataset004_Hippocampus"


def test_names_with_underscores_and_datasets_only_in_results_are_found(a_workspace):
    assert a_workspace.resolve_dataset("ISBI_Membrane") == "Dataset120_ISBI_Membrane"
    assert a_workspace.results_dataset(900) == a_workspace.results / "Dataset900_SyntheticEllipsoids"


def test_unknown_dataset_error_lists_the_datasets_that_exist(a_workspace):
    with pytest.raises(AutoSegNetError) as caught:
        a_workspace.resolve_dataset("Prostate")
    message = str(caught.value)
    assert "No dataset 'Prostate'" in message
    assert ("Datasets found: Dataset004_Hippocampus, Dataset120_ISBI_Membrane, Dataset900_SyntheticEllipsoids"
            in message)
    assert "not_a_dataset" not in message and "autosegnet convert" in message


def test_unknown_dataset_in_an_empty_workspace_says_none(tmp_path):
    with pytest.raises(AutoSegNetError, match="Datasets found: none"):
        Workspace.at(tmp_path).resolve_dataset(5)


def test_a_name_used_by_two_ids_is_ambiguous(a_workspace):
    (a_workspace.raw / "Dataset005_Hippocampus").mkdir()
    with pytest.raises(AutoSegNetError, match="ambiguous: Dataset004_Hippocampus, Dataset005_Hippocampus"):
        a_workspace.resolve_dataset("Hippocampus")


def test_workspace_option_wins_over_the_environment(tmp_path):
    env = {"AUTOSEGNET_HOME": str(tmp_path / "home"), "nnUNet_raw": str(tmp_path / "nnraw")}
    assert Workspace.from_environment(env, tmp_path / "opt") == Workspace.at(tmp_path / "opt")
    assert Workspace.from_environment(env) == Workspace.at(tmp_path / "home")


def test_nnunet_variables_are_honoured_each_where_set(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    env = {"nnUNet_raw": str(tmp_path / "nnraw"), "nnUNet_results": str(tmp_path / "nnres")}
    ws = Workspace.from_environment(env)
    assert ws.raw == (tmp_path / "nnraw").resolve() and ws.results == (tmp_path / "nnres").resolve()
    assert ws.preprocessed == (Path.home() / "autosegnet" / "preprocessed").resolve()


def test_create_makes_the_three_folders(tmp_path):
    ws = Workspace.at(tmp_path / "w").create()
    assert all(p.is_dir() for p in (ws.raw, ws.preprocessed, ws.results))
