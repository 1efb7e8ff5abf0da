"""``install-model`` of a zip written by nnU-Net v2's ``nnUNetv2_export_model_to_zip``: the kind is detected, the
model folders are unpacked with the same safety checks as our zips and imported as ``import-nnunet`` does."""

from __future__ import annotations

import json
import logging
import pickle
import stat
import zipfile
from pathlib import Path

import pytest
import test_models_nnunet_import as nnunet
import torch
from _helpers_inference import DATASET, random_network, tiny_configuration, tiny_dataset_json

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models import InstallOptions, import_nnunet_model, install_zip, zip_kind
from AutoSegNetLib.utils.stop import StopRequest, StopRequested
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
INSTALLED = "AutoSegNet__nnUNetPlans__3d_fullres"


def an_nnunet_results_folder(root: Path, configurations: tuple[str, ...] = ("3d_fullres",)) -> Path:
    """``root/nnUNet_results`` holding one trained nnU-Net model folder per configuration (2 folds of 3d_fullres)."""
    for name in configurations:
        conf = tiny_configuration(**({"name": "2d", "ndim": 2, "patch": (8, 8)} if name == "2d" else {}))
        networks = [random_network(conf, tiny_dataset_json(), seed=s) for s in range(2 if name == "3d_fullres" else 1)]
        nnunet.an_nnunet_model_folder(root, conf, networks)
    return root / "nnUNet_results"


def an_nnunet_export(results: Path, zip_path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A zip laid out as ``nnUNetv2_export_model_to_zip`` writes it (paths relative to nnUNet_results): per model
    folder plans.json, dataset.json, dataset_fingerprint.json, per fold the checkpoint, progress.png, debug.json and
    validation/summary.json, crossval results with a postprocessing.pkl, and inference_information.json."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for model in sorted((results / DATASET).iterdir()):
            prefix = f"{DATASET}/{model.name}"
            for name in ("plans.json", "dataset.json"):
                archive.write(model / name, f"{prefix}/{name}")
            archive.writestr(f"{prefix}/dataset_fingerprint.json", "{}")
            for fold in sorted(model.glob("fold_*")):
                archive.write(fold / "checkpoint_final.pth", f"{prefix}/{fold.name}/checkpoint_final.pth")
                archive.writestr(f"{prefix}/{fold.name}/progress.png", b"\x89PNG not really")
                archive.writestr(f"{prefix}/{fold.name}/debug.json", "{}")
                archive.writestr(f"{prefix}/{fold.name}/validation/summary.json", json.dumps({"mean": {}}))
            archive.writestr(f"{prefix}/crossval_results_folds_0_1/postprocessing.pkl", pickle.dumps(nnunet.Payload()))
        archive.writestr(f"{DATASET}/inference_information.json", "{}")
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return zip_path


@pytest.fixture(scope="module")
def an_nnunet_results(tmp_path_factory) -> Path:
    return an_nnunet_results_folder(tmp_path_factory.mktemp("nnunet"))


@pytest.fixture
def an_export_zip(an_nnunet_results: Path, tmp_path: Path) -> Path:
    return an_nnunet_export(an_nnunet_results, tmp_path / "Dataset001_Tiny.zip")


@pytest.fixture
def a_workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "ws").create()


def nothing_installed(workspace: Workspace) -> bool:
    folder = workspace.results / DATASET
    return not folder.exists() or not [p for p in folder.iterdir()]


def test_an_nnunet_export_installs_the_same_weights_as_a_direct_import(an_export_zip, an_nnunet_results, a_workspace,
                                                                       tmp_path) -> None:
    assert zip_kind(an_export_zip) == "nnunet"
    installed = install_zip(an_export_zip, a_workspace)
    assert installed.kind == "nnunet" and installed.folders == [a_workspace.results / DATASET / INSTALLED]
    direct = import_nnunet_model(an_nnunet_results / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres", tmp_path)
    for fold in ("fold_0", "fold_1"):
        ours = torch.load(installed.folders[0] / fold / "checkpoint_final.pth", weights_only=True)
        expected = torch.load(direct / fold / "checkpoint_final.pth", weights_only=True)
        assert ours["network_weights"].keys() == expected["network_weights"].keys()
        assert all(torch.equal(v, expected["network_weights"][k]) for k, v in ours["network_weights"].items())
    assert sorted(p.name for p in installed.folders[0].iterdir()) == ["dataset.json", "fold_0", "fold_1", "plans.json"]
    assert sorted(p.name for p in (a_workspace.results / DATASET).iterdir()) == [INSTALLED]  # no staging left


def test_every_configuration_of_the_export_is_installed(tmp_path, a_workspace) -> None:
    results = an_nnunet_results_folder(tmp_path / "two", ("2d", "3d_fullres"))
    installed = install_zip(an_nnunet_export(results, tmp_path / "two.zip"), a_workspace)
    assert [p.name for p in installed.folders] == ["AutoSegNet__nnUNetPlans__2d", INSTALLED]


def test_the_cli_says_which_kind_of_zip_it_installed(an_export_zip, a_workspace, capsys) -> None:
    command = ["--workspace", str(a_workspace.results.parent), "--progress", "json", "install-model"]
    assert main([*command, str(an_export_zip)]) == 0
    done = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert done["event"] == "done" and done["kind"] == "nnunet"
    assert done["installed"] == [str(a_workspace.results / DATASET / INSTALLED)]
    assert main([*command, str(an_export_zip)]) == 2  # installed already
    assert "--force" in capsys.readouterr().err
    assert main([*command, str(an_export_zip), "--force"]) == 0


def test_checkpoints_holding_python_objects_need_trust_checkpoints(an_nnunet_results, a_workspace, tmp_path, capsys,
                                                                   caplog) -> None:
    results = tmp_path / "copy"
    model = "nnUNetTrainer__nnUNetPlans__3d_fullres"
    for name in ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth"):
        (results / DATASET / model / name).parent.mkdir(parents=True, exist_ok=True)
        (results / DATASET / model / name).write_bytes((an_nnunet_results / DATASET / model / name).read_bytes())
    path = results / DATASET / model / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["init_args"]["extra"] = nnunet.Payload()
    torch.save(data, path)
    zip_path = an_nnunet_export(results, tmp_path / "untrusted.zip")
    command = ["--workspace", str(a_workspace.results.parent), "install-model", str(zip_path)]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "--trust-checkpoints" in err and f"{zip_path}:{DATASET}/{model}/fold_0/checkpoint_final.pth" in err
    assert nothing_installed(a_workspace)
    with caplog.at_level(logging.WARNING):
        assert main([*command, "--trust-checkpoints"]) == 0
    assert "trusted by --trust-checkpoints" in caplog.text
    assert (a_workspace.results / DATASET / INSTALLED / "fold_0" / "checkpoint_final.pth").is_file()


UNSAFE = {
    "path traversal": (f"{DATASET}/../../evil.txt", None, "unsafe path"),
    "absolute path": ("/tmp/evil.txt", None, "unsafe path"),
    "symbolic link": (f"{DATASET}/link", stat.S_IFLNK | 0o777, "symbolic link"),
}


@pytest.mark.parametrize("name", list(UNSAFE))
def test_unsafe_entries_anywhere_in_an_nnunet_zip_are_refused(name, an_nnunet_results, a_workspace, tmp_path) -> None:
    entry, mode, message = UNSAFE[name]
    zip_path = an_nnunet_export(an_nnunet_results, tmp_path / "bad.zip")
    with zipfile.ZipFile(zip_path, "a") as archive:
        info = zipfile.ZipInfo(entry)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, b"x")
    with pytest.raises(AutoSegNetError, match=message):
        install_zip(zip_path, a_workspace)
    assert nothing_installed(a_workspace) and not (tmp_path / "evil.txt").exists()


def test_an_nnunet_zip_unpacking_to_more_than_max_size_is_refused(an_export_zip, a_workspace) -> None:
    with pytest.raises(AutoSegNetError, match="more than --max-size 1kB"):
        install_zip(an_export_zip, a_workspace, InstallOptions(max_size=1000))
    assert nothing_installed(a_workspace)


def test_a_checkpoint_compressed_like_a_zip_bomb_is_refused(an_nnunet_results, a_workspace, tmp_path) -> None:
    bomb = {f"{DATASET}/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_2/checkpoint_final.pth": bytes(8 * 10**6)}
    with pytest.raises(AutoSegNetError, match="zip bomb"):
        install_zip(an_nnunet_export(an_nnunet_results, tmp_path / "bomb.zip", bomb), a_workspace)
    assert nothing_installed(a_workspace)


def test_a_stop_request_installs_nothing(an_export_zip, a_workspace) -> None:
    stop = StopRequest()
    stop.request("test")
    with pytest.raises(StopRequested, match="nothing was installed"):
        install_zip(an_export_zip, a_workspace, stop=stop)
    assert nothing_installed(a_workspace)


def test_zips_of_neither_kind_are_refused_naming_both_layouts(tmp_path, a_workspace) -> None:
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr(f"{DATASET}/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/progress.png", b"png")
    with pytest.raises(AutoSegNetError, match="no manifest.json.*nnUNetv2_export_model_to_zip"):
        install_zip(tmp_path / "notes.zip", a_workspace)
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(AutoSegNetError, match="not a zip file"):
        install_zip(tmp_path / "text.zip", a_workspace)


def test_an_export_without_checkpoints_says_what_layout_is_expected(tmp_path, a_workspace) -> None:
    with zipfile.ZipFile(tmp_path / "plans_only.zip", "w") as archive:
        archive.writestr(f"{DATASET}/nnUNetTrainer__nnUNetPlans__3d_fullres/plans.json", "{}")
        archive.writestr(f"{DATASET}/nnUNetTrainer__nnUNetPlans__3d_fullres/dataset.json", "{}")
    with pytest.raises(AutoSegNetError, match="no complete nnU-Net v2 model.*fold_<k>/checkpoint_final.pth"):
        install_zip(tmp_path / "plans_only.zip", a_workspace)
