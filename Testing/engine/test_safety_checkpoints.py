"""Checkpoints are read without running code from them, and written so that crashes, full disks and shared
folders leave usable files: one reader for every command, plain data only, refusal of pickled objects, clear
messages for damaged files, stale temporaries cleaned, umask honoured, fsync before the rename."""

from __future__ import annotations

import errno
import os
import random
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers_inference import DATASET, tiny_configuration, tiny_dataset_json, write_model_folder
from _helpers_training import tiny_config, tiny_workspace

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.model_folder import ModelFolder
from AutoSegNetLib.models import import_nnunet_model
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training import checkpoint as checkpoints
from AutoSegNetLib.training import train
from AutoSegNetLib.training.pretrained import load_pretrained_weights
from AutoSegNetLib.utils import atomic
from AutoSegNetLib.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
MODEL = "AutoSegNet__nnUNetPlans__3d_fullres"


class RunsCodeWhenLoaded:
    """Unpickling this object calls ``os.system`` -- what a malicious checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def make_malicious(path: Path, marker: Path) -> None:
    """Rewrite the checkpoint at ``path`` with an extra field whose unpickling creates ``marker``."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    data["payload"] = RunsCodeWhenLoaded(marker)
    torch.save(data, path)


def a_checkpoint(path: Path, **fields) -> Path:
    """A checkpoint as ``save_checkpoint`` writes it, with a little of everything."""
    return checkpoints.save_checkpoint(path, network_weights={"w": torch.ones(3)}, epoch=1, **fields)


@pytest.fixture(scope="module")
def a_trained_workspace(tmp_path_factory) -> Path:
    """A workspace with fold 0 of 3d_fullres trained for one epoch (final, best and latest checkpoints)."""
    root = tmp_path_factory.mktemp("trained")
    train(tiny_workspace(root), "1", "3d_fullres", 0, tiny_config(epochs=1), ProgressReporter("none"))
    return root


@pytest.fixture
def a_workspace_copy(a_trained_workspace: Path, tmp_path: Path) -> Path:
    shutil.copytree(a_trained_workspace, tmp_path / "ws")
    return tmp_path / "ws"


def fold_folder(workspace: Path) -> Path:
    return workspace / "results" / DATASET / "AutoSegNet__AutoSegNetPlans__3d_fullres" / "fold_0"


# ----- 1. checkpoints never run code ------------------------------------------------------------------------
def test_predict_refuses_a_checkpoint_that_runs_code_and_the_code_never_runs(tmp_path, capsys) -> None:
    folder = write_model_folder(tmp_path / "results", tiny_configuration(), tiny_dataset_json())
    marker = tmp_path / "marker"
    make_malicious(folder / "fold_0" / "checkpoint_final.pth", marker)
    (tmp_path / "in").mkdir()
    code = main(["predict", "--progress", "none", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--model-folder", str(folder), "--device", "cpu", "--no-tta"])
    assert not marker.exists()
    assert code == 2
    error = capsys.readouterr().err
    assert str(folder / "fold_0" / "checkpoint_final.pth") in error and "posix.system" in error


@pytest.mark.parametrize("option", ["--continue", "--validate-only", "--pretrained"])
def test_train_refuses_a_checkpoint_that_runs_code(a_workspace_copy: Path, option: str, capsys) -> None:
    checkpoint = fold_folder(a_workspace_copy) / "checkpoint_final.pth"
    marker = a_workspace_copy / "marker"
    make_malicious(checkpoint, marker)
    options = [option, str(checkpoint)] if option == "--pretrained" else [option]
    fold = "1" if option == "--pretrained" else "0"
    code = main(["train", "--workspace", str(a_workspace_copy), "--progress", "none", "1", "3d_fullres", fold,
                 "--device", "cpu", "--epochs", "1", "--warmup-epochs", "0", "--iterations", "1",
                 "--val-iterations", "1", *options])
    assert not marker.exists()
    assert code == 2
    assert f"{checkpoint} holds Python objects" in capsys.readouterr().err


def test_export_model_refuses_a_checkpoint_that_runs_code(tmp_path, capsys) -> None:
    workspace = Workspace.at(tmp_path / "ws").create()
    (workspace.raw / DATASET).mkdir()
    folder = write_model_folder(workspace.results, tiny_configuration(), tiny_dataset_json())
    marker = tmp_path / "marker"
    make_malicious(folder / "fold_0" / "checkpoint_final.pth", marker)
    code = main(["export-model", "--workspace", str(tmp_path / "ws"), "--progress", "none", "-d", "1",
                 "-c", "3d_fullres", "-o", str(tmp_path / "model.zip")])
    assert not marker.exists()
    assert code == 2 and not (tmp_path / "model.zip").exists()
    assert "would run code from the file" in capsys.readouterr().err


def test_the_pretrained_loader_refuses_a_checkpoint_that_runs_code(tmp_path) -> None:
    path = a_checkpoint(tmp_path / "fold_0" / "checkpoint_final.pth")
    make_malicious(path, tmp_path / "marker")
    with pytest.raises(AutoSegNetError, match="posix.system"):
        load_pretrained_weights(torch.nn.Linear(1, 1), path)
    assert not (tmp_path / "marker").exists()


def test_checkpoints_written_by_training_load_with_weights_only_and_no_allowed_globals(a_trained_workspace) -> None:
    paths = sorted(fold_folder(a_trained_workspace).glob("checkpoint_*.pth"))
    assert [p.name for p in paths] == ["checkpoint_best.pth", "checkpoint_final.pth"]  # one epoch: no latest
    for path in paths:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        assert torch.load(path, map_location="cpu", weights_only=True)["epoch"] == 1


def test_a_checkpoint_written_before_this_change_still_loads_and_restores_the_random_state(tmp_path) -> None:
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
               "sampler": {"train": 7}}  # the NumPy state as an ndarray, as before
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    path = tmp_path / "checkpoint_latest.pth"
    torch.save({"format": "autosegnet-checkpoint", "version": 1, "network_weights": {}, "rng_state": old_rng}, path)
    loaded = checkpoints.load_checkpoint(path)
    assert checkpoints.restore_rng_state(loaded["rng_state"]) == {"train": 7}
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_the_random_state_survives_a_save_and_load(tmp_path) -> None:
    np.random.seed(11)
    random.seed(12)
    path = a_checkpoint(tmp_path / "checkpoint_latest.pth", rng_state=checkpoints.capture_rng_state({"val": 2}))
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    checkpoints.restore_rng_state(checkpoints.load_checkpoint(path)["rng_state"])
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected


def test_saving_a_non_plain_object_names_the_field(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"training_config\.data_folder.*PosixPath"):
        a_checkpoint(tmp_path / "checkpoint_latest.pth", training_config={"data_folder": Path("x")})
    assert not list(tmp_path.iterdir())


def test_numpy_scalars_are_saved_as_python_numbers(tmp_path) -> None:
    path = a_checkpoint(tmp_path / "checkpoint_best.pth", best_ema=np.float64(0.5))
    best = torch.load(path, weights_only=True)["best_ema"]
    assert type(best) is float and best == 0.5


@pytest.mark.parametrize("reader", ["training", "model folder"])
def test_a_truncated_latest_checkpoint_is_named_and_the_other_checkpoints_are_offered(tmp_path, reader) -> None:
    folder = write_model_folder(tmp_path / "results", tiny_configuration(), tiny_dataset_json(),
                                checkpoints=("final", "best", "latest"))
    latest = folder / "fold_0" / "checkpoint_latest.pth"
    latest.write_bytes(latest.read_bytes()[:300])
    with pytest.raises(AutoSegNetError) as error:
        if reader == "training":
            checkpoints.load_checkpoint(latest)
        else:
            ModelFolder.open(folder).load_checkpoint("0", "latest")
    message = str(error.value)
    assert f"{latest} is truncated or not a checkpoint" in message
    assert "checkpoint_best.pth" in message and "checkpoint_final.pth" in message


@pytest.mark.parametrize("content", [b"", b"plain text, not a checkpoint"])
def test_an_empty_or_foreign_file_is_not_a_checkpoint(tmp_path, content) -> None:
    path = tmp_path / "checkpoint_final.pth"
    path.write_bytes(content)
    with pytest.raises(AutoSegNetError, match=f"{path} is truncated or not a checkpoint"):
        checkpoints.load_checkpoint(path)


def test_the_model_folder_reader_checks_the_checkpoint_version(tmp_path) -> None:
    folder = write_model_folder(tmp_path / "results", tiny_configuration(), tiny_dataset_json())
    path = folder / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=True)
    torch.save({**data, "version": 99}, path)
    with pytest.raises(AutoSegNetError, match=f"{path}: checkpoint version 99 is not supported"):
        ModelFolder.open(folder).load_checkpoint("0")


# ----- 2. no half-written model folders, no orphan temporaries ---------------------------------------------------
def test_a_refused_nnunet_import_leaves_no_folder_behind(tmp_path) -> None:
    import test_models_nnunet_import as nnunet

    conf = tiny_configuration()
    source = nnunet.an_nnunet_model_folder(tmp_path, conf, [nnunet.random_network(conf, tiny_dataset_json())])
    path = source / "fold_0" / "checkpoint_final.pth"
    data = torch.load(path, weights_only=False)
    data["init_args"]["extra"] = nnunet.Payload()
    torch.save(data, path)
    with pytest.raises(AutoSegNetError, match="--trust-checkpoints"):
        import_nnunet_model(source, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    imported = import_nnunet_model(source, tmp_path / "out", trust_checkpoints=True)  # no --force needed
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [imported.name]
    assert stat.S_IMODE(imported.stat().st_mode) == 0o777 & ~_umask()


def test_a_forced_nnunet_import_replaces_the_earlier_one_only_when_it_succeeds(tmp_path) -> None:
    import test_models_nnunet_import as nnunet

    conf = tiny_configuration()
    source = nnunet.an_nnunet_model_folder(tmp_path, conf, [nnunet.random_network(conf, tiny_dataset_json())])
    imported = import_nnunet_model(source, tmp_path / "out")
    (imported / "notes.txt").write_text("earlier import")
    other = tiny_configuration(network="ResidualEncoderUNet")
    torch.save(nnunet.nnunet_checkpoint(nnunet.random_network(other, tiny_dataset_json()), {}, "3d_fullres", "",
                                        (0, 1, 2)), source / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(AutoSegNetError, match="do not fit"):
        import_nnunet_model(source, tmp_path / "out", force=True)
    assert (imported / "notes.txt").read_text() == "earlier import"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [imported.name]


_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
import torch
from AutoSegNetLib.training.checkpoint import save_checkpoint

def half_then(obj, target):
    if hasattr(target, "write"):
        target.write(b"half a checkpoint"); target.flush()
    else:
        Path(target).write_bytes(b"half a checkpoint")
    if sys.argv[2] == "wait":
        sys.stdout.write("writing\\n"); sys.stdout.flush(); sys.stdin.read()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = half_then
save_checkpoint(Path(sys.argv[1]), epoch=2)
"""


def _writer(path: Path, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(path), mode], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_a_temporary_left_by_a_killed_checkpoint_writer_is_removed_by_the_next_save(tmp_path) -> None:
    a_checkpoint(tmp_path / "checkpoint_latest.pth")
    assert _writer(tmp_path / "checkpoint_latest.pth", "die").wait(60) == -signal.SIGKILL
    assert len(_temporaries(tmp_path)) == 1 and _temporaries(tmp_path)[0].startswith(".checkpoint_latest.")
    a_checkpoint(tmp_path / "checkpoint_best.pth")
    assert _temporaries(tmp_path) == []
    assert checkpoints.load_checkpoint(tmp_path / "checkpoint_latest.pth")["epoch"] == 1


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
def test_the_temporary_of_a_writer_still_running_is_kept(tmp_path) -> None:
    writer = _writer(tmp_path / "checkpoint_latest.pth", "wait")
    try:
        assert writer.stdout.readline() == "writing\n"
        a_checkpoint(tmp_path / "checkpoint_best.pth")
        assert len(_temporaries(tmp_path)) == 1
    finally:
        writer.kill()
        writer.wait(60)
    a_checkpoint(tmp_path / "checkpoint_best.pth")
    assert _temporaries(tmp_path) == []


def test_a_temporary_without_a_writer_tag_is_removed_once_it_is_old(tmp_path) -> None:
    orphan = tmp_path / ".checkpoint_latest.k3j_x9a2.pth"  # how temporaries were named before
    orphan.write_bytes(b"half")
    a_checkpoint(tmp_path / "checkpoint_best.pth")
    assert orphan.exists()  # it could belong to a writer on another machine
    os.utime(orphan, (0, 0))
    a_checkpoint(tmp_path / "checkpoint_best.pth")
    assert not orphan.exists()


# ----- 3. a full disk ---------------------------------------------------------------------------------------------
def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch) -> None:
    path = a_checkpoint(tmp_path / "checkpoint_latest.pth")

    def disk_full(obj, target) -> None:
        target.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(AutoSegNetError, match=f"No space left on {tmp_path} while saving checkpoint_latest.pth"):
        a_checkpoint(path)
    monkeypatch.undo()
    assert checkpoints.load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_latest.pth"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_torch_reports_a_full_disk_as_enospc_when_saving_into_an_open_file() -> None:
    """What the writer relies on: torch.save(path) would only say 'unexpected pos'."""
    with pytest.raises(OSError) as error, open("/dev/full", "wb") as stream:
        torch.save({"w": torch.zeros(10_000)}, stream)
    assert error.value.errno == errno.ENOSPC


# ----- 4. permissions and durability ------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomically_written_files_honour_the_umask(tmp_path, umask: int, mode: int) -> None:
    previous = os.umask(umask)
    try:
        atomic.write_json(tmp_path / "plans.json", {"a": 1})
        a_checkpoint(tmp_path / "checkpoint_final.pth")
        with atomic.atomic_path(tmp_path / "case.nii.gz") as tmp:
            tmp.write_bytes(b"image")
    finally:
        os.umask(previous)
    for name in ("plans.json", "checkpoint_final.pth", "case.nii.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


@pytest.fixture
def fsynced(monkeypatch) -> list[int]:
    """File descriptors passed to ``os.fsync``."""
    calls: list[int] = []
    real = os.fsync

    def record(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return calls


def test_checkpoints_are_fsynced_before_the_rename(tmp_path, fsynced, monkeypatch) -> None:
    order: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(f"replace after {len(fsynced)} fsync"),
                                                     real_replace(a, b))[1])
    a_checkpoint(tmp_path / "checkpoint_latest.pth")
    assert order and order[0] != "replace after 0 fsync"


def test_the_status_file_is_fsynced_and_other_json_files_are_not(tmp_path, fsynced) -> None:
    atomic.write_json(tmp_path / "progress.json", {"a": 1})
    assert fsynced == []
    ProgressReporter("none", status_file=tmp_path / "status.json").emit("epoch", epoch=1)
    assert fsynced
