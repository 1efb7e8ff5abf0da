"""``export-model`` / ``install-model``: round trip, manifest, and refusal of damaged or malicious zips."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_inference import (
    DATASET,
    blob_image,
    geometry,
    tiny_configuration,
    tiny_dataset_json,
    tiny_plans,
    write_model_folder,
)

from AutoSegNetLib import __version__
from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference import Predictor
from AutoSegNetLib.models import export_model, install_model
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
MODEL = "AutoSegNet__nnUNetPlans__3d_fullres"


@pytest.fixture
def source(tmp_path: Path) -> Workspace:
    workspace = Workspace.at(tmp_path / "source").create()
    (workspace.raw / DATASET).mkdir()
    write_model_folder(workspace.results, tiny_configuration(), tiny_dataset_json(), folds=(0, 1), mirror_axes=None)
    (workspace.results / DATASET / MODEL / "postprocessing.json").write_text(json.dumps(
        {"format": "autosegnet-postprocessing", "version": 1, "steps": []}))
    return workspace


@pytest.fixture
def target(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "target").create()


@pytest.fixture
def model_zip(source: Workspace, tmp_path: Path) -> Path:
    export_model(source, "1", ["3d_fullres"], tmp_path / "model.zip", folds=[0, 1])
    return tmp_path / "model.zip"


def test_an_installed_model_predicts_exactly_like_the_exported_one(source, target, model_zip) -> None:
    installed = install_model(model_zip, target)
    assert installed == [target.results / DATASET / MODEL]
    image, geo = blob_image(), geometry()
    original = Predictor.from_model_folder(source.results / DATASET / MODEL, folds=None, device="cpu")
    copy = Predictor.from_model_folder(installed[0], folds=None, device="cpu")
    segmentation, probabilities = copy.predict(image, geo)
    expected_segmentation, expected = original.predict(image, geo)
    np.testing.assert_array_equal(segmentation, expected_segmentation)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)  # same weights; BLAS may round the last bit
    assert (installed[0] / "postprocessing.json").is_file()
    assert not list((target.results / DATASET).glob(".install-*"))


def test_the_manifest_names_versions_labels_channels_and_hashes(model_zip: Path) -> None:
    with zipfile.ZipFile(model_zip) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        for name, info in manifest["files"].items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == info["sha256"]
        checkpoint = torch.load(io.BytesIO(archive.read(f"{MODEL}/fold_0/checkpoint_final.pth")), weights_only=True)
    assert manifest["engine_version"] == __version__ and manifest["created"]
    assert manifest["labels"] == {"background": 0, "left": 1, "right": 2} and manifest["channel_names"] == {"0": "MR0"}
    assert manifest["models"] == [{"folder": MODEL, "configuration": "3d_fullres", "folds": ["0", "1"],
                                   "checkpoint": "final"}]
    assert sorted(manifest["files"]) == sorted([
        f"{MODEL}/plans.json", f"{MODEL}/dataset.json", f"{MODEL}/postprocessing.json",
        f"{MODEL}/fold_0/checkpoint_final.pth", f"{MODEL}/fold_1/checkpoint_final.pth",
    ])
    assert "optimizer_state" not in checkpoint and "rng_state" not in checkpoint and "network_weights" in checkpoint


def test_cli_export_and_install_and_refuse_to_overwrite_without_force(source, target, tmp_path, capsys) -> None:
    zip_path = tmp_path / "cli.zip"
    assert main(["export-model", "--workspace", str(source.results.parent), "-d", "1", "-c", "3d_fullres",
                 "-o", str(zip_path), "-f", "0"]) == 0
    assert main(["install-model", "--workspace", str(target.results.parent), str(zip_path)]) == 0
    assert main(["install-model", "--workspace", str(target.results.parent), str(zip_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["install-model", "--workspace", str(target.results.parent), str(zip_path), "--force"]) == 0
    assert [p.name for p in (target.results / DATASET / MODEL).glob("fold_*")] == ["fold_0"]


def test_a_cascade_export_brings_its_lowres_stage(tmp_path: Path, target: Workspace) -> None:
    workspace = Workspace.at(tmp_path / "cascade").create()
    (workspace.raw / DATASET).mkdir()
    lowres = tiny_configuration("3d_lowres", next_stage="3d_cascade_fullres")
    cascade = tiny_configuration("3d_cascade_fullres", previous_stage="3d_lowres")
    plans = tiny_plans([lowres, cascade])
    write_model_folder(workspace.results, lowres, tiny_dataset_json(), plans=plans)
    write_model_folder(workspace.results, cascade, tiny_dataset_json(), plans=plans, extra_inputs=2)
    manifest = export_model(workspace, "1", ["3d_cascade_fullres"], tmp_path / "c.zip")
    assert [m.configuration for m in manifest.models] == ["3d_cascade_fullres", "3d_lowres"]
    installed = install_model(tmp_path / "c.zip", target)
    Predictor.from_model_folder(installed[0], device="cpu", tta=False).predict(blob_image((8, 8, 8)), geometry())


# ----- tampered zips ------------------------------------------------------------------------------------
Entries = list[tuple[zipfile.ZipInfo, bytes]]


def rebuilt(model_zip: Path, out: Path, change: Callable[[Entries, dict], None]) -> Path:
    """A copy of ``model_zip`` after ``change(entries, manifest)`` edits the entries and the manifest in place."""
    with zipfile.ZipFile(model_zip) as archive:
        entries = [(info, archive.read(info)) for info in archive.infolist() if info.filename != "manifest.json"]
        manifest = json.loads(archive.read("manifest.json"))
    change(entries, manifest)
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for info, data in entries:
            archive.writestr(info, data)
    return out


def add_entry(name: str, data: bytes = b"x", listed: bool = True, mode: int | None = None):
    def change(entries: Entries, manifest: dict) -> None:
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        entries.append((info, data))
        if listed:
            manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return change


def drop_entry(suffix: str):
    def change(entries: Entries, manifest: dict) -> None:
        entries[:] = [(i, d) for i, d in entries if not i.filename.endswith(suffix)]
    return change


def edit_entry(suffix: str):
    def change(entries: Entries, manifest: dict) -> None:
        entries[:] = [(i, d.replace(b"3d_fullres", b"3d_fullreZ") if i.filename.endswith(suffix) else d)
                      for i, d in entries]
    return change


def edit_manifest(**fields):
    def change(entries: Entries, manifest: dict) -> None:
        manifest.update(fields)
    return change


def duplicate_entry(entries: Entries, manifest: dict) -> None:
    entries.append(entries[0])  # zipfile warns "Duplicate name" while writing it, which is the point


TAMPERED = {
    "path traversal": (add_entry(f"{MODEL}/../../evil.txt"), "unsafe path"),
    "absolute path": (add_entry("/tmp/evil.txt"), "unsafe path"),
    "windows drive": (add_entry("C:/evil.txt"), "unsafe path"),
    "backslash": (add_entry(f"{MODEL}\\..\\evil.txt"), "unsafe path"),
    "symbolic link": (add_entry(f"{MODEL}/link", b"/etc/passwd", mode=stat.S_IFLNK | 0o777), "symbolic link"),
    "unlisted file": (add_entry(f"{MODEL}/extra.py", listed=False), "does not list"),
    "file outside the model": (add_entry("other/file.txt"), "outside the listed model folders"),
    "missing checkpoint": (drop_entry("fold_1/checkpoint_final.pth"), "missing"),
    "changed plans": (edit_entry("plans.json"), "sha256"),
    "duplicate entry": (duplicate_entry, "appears twice"),
    "newer engine": (edit_manifest(engine_version="99.0.0"), "Update AutoSegNet"),
    "newer plans": (edit_manifest(plans_version=2), "not supported"),
    "newer manifest": (edit_manifest(version=2), "manifest version"),
    "bad dataset name": (edit_manifest(dataset_name="../x"), "DatasetXXX_Name"),
}


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_zips_are_refused_with_a_clear_error_and_nothing_is_installed(name, model_zip, target, tmp_path):
    change, message = TAMPERED[name]
    bad = rebuilt(model_zip, tmp_path / "bad.zip", change)
    with pytest.raises(AutoSegNetError, match=message):
        install_model(bad, target)
    assert not (target.results / DATASET / MODEL).exists()
    assert not list(target.results.rglob(".install-*"))
    assert not (tmp_path / "evil.txt").exists() and not (target.results / "evil.txt").exists()


def test_a_wrong_size_in_the_manifest_is_refused(model_zip, target, tmp_path) -> None:
    def change(entries: Entries, manifest: dict) -> None:
        manifest["files"][f"{MODEL}/plans.json"]["size"] += 1
    with pytest.raises(AutoSegNetError, match="bytes"):
        install_model(rebuilt(model_zip, tmp_path / "bad.zip", change), target)


def test_a_checkpoint_with_pickled_objects_is_refused(model_zip, target, tmp_path) -> None:
    buffer = io.BytesIO()
    torch.save({"format": "autosegnet-checkpoint", "network_weights": {}, "payload": Path("x")}, buffer)
    data = buffer.getvalue()
    name = f"{MODEL}/fold_0/checkpoint_final.pth"

    def change(entries: Entries, manifest: dict) -> None:
        entries[:] = [(i, data if i.filename == name else d) for i, d in entries]
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    with pytest.raises(AutoSegNetError, match="would run code from the file, so it is refused"):
        install_model(rebuilt(model_zip, tmp_path / "bad.zip", change), target)


def test_files_that_are_not_model_zips_are_refused(tmp_path: Path, target: Workspace) -> None:
    (tmp_path / "notes.zip").write_text("not a zip")
    with pytest.raises(AutoSegNetError, match="not a zip"):
        install_model(tmp_path / "notes.zip", target)
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(AutoSegNetError, match="manifest.json"):
        install_model(tmp_path / "empty.zip", target)


def test_a_model_folder_given_by_path_exports_under_its_model_folder_name(source, target, tmp_path) -> None:
    version = tmp_path / "versions" / DATASET / "3d_fullres" / "v001"  # a saved version: not a results folder
    shutil.copytree(source.results / DATASET / MODEL, version)
    zip_path = tmp_path / "version.zip"
    assert main(["export-model", "--workspace", str(source.results.parent), "--model-folder", str(version),
                 "-o", str(zip_path), "-f", "1"]) == 0
    with zipfile.ZipFile(zip_path) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["models"] == [{"folder": MODEL, "configuration": "3d_fullres", "folds": ["1"],
                                   "checkpoint": "final"}]
    assert manifest["dataset_name"] == DATASET
    assert install_model(zip_path, target) == [target.results / DATASET / MODEL]


def test_export_needs_a_dataset_or_a_model_folder_not_both(source, tmp_path, capsys) -> None:
    workspace = ["--workspace", str(source.results.parent)]
    assert main(["export-model", *workspace, "-o", str(tmp_path / "a.zip")]) == 2
    assert main(["export-model", *workspace, "-d", "1", "--model-folder", str(tmp_path), "-o",
                 str(tmp_path / "b.zip")]) == 2
    assert "either -d DATASET" in capsys.readouterr().err
