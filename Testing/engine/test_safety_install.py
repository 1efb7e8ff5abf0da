"""``install-model`` safety (issue #14): a cap on the unpacked size (``--max-size``), checked on the zip directory
before anything is unpacked and counted while unpacking, refusal of bomb-like compression ratios and of zips
that lie about their sizes, and messages instead of tracebacks for a workspace that cannot be written."""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _helpers_inference import DATASET, tiny_configuration, tiny_dataset_json, write_model_folder

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models import export_model, install
from AutoSegNetLib.workspace import Workspace

torch.set_num_threads(2)
MODEL = "AutoSegNet__nnUNetPlans__3d_fullres"
MB = 1 << 20


@pytest.fixture
def a_model_zip(tmp_path: Path) -> Path:
    source = Workspace.at(tmp_path / "source").create()
    (source.raw / DATASET).mkdir()
    write_model_folder(source.results, tiny_configuration(), tiny_dataset_json(), folds=(0,), mirror_axes=None)
    export_model(source, "1", ["3d_fullres"], tmp_path / "model.zip", folds=[0])
    return tmp_path / "model.zip"


@pytest.fixture
def a_workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "target").create()


def zeros(size: int) -> Iterator[bytes]:
    while size > 0:
        yield bytes(min(MB, size))
        size -= MB


def with_extra_member(model_zip: Path, out: Path, name: str, blocks: Iterator[bytes] | bytes, level: int = 1,
                      declared: int | None = None) -> Path:
    """A copy of ``model_zip`` with one more member ``name`` (streamed, deflated at ``level``), listed in the
    manifest with its sha256 and its size (or ``declared``)."""
    blocks = [blocks] if isinstance(blocks, bytes) else blocks
    digest, size = hashlib.sha256(), 0
    with zipfile.ZipFile(model_zip) as source, zipfile.ZipFile(out, "w") as archive:
        manifest = json.loads(source.read("manifest.json"))
        for info in source.infolist():
            if info.filename != "manifest.json":
                archive.writestr(info, source.read(info))
        member = zipfile.ZipInfo(name)
        member.compress_type, member._compresslevel = zipfile.ZIP_DEFLATED, level
        with archive.open(member, "w", force_zip64=True) as stream:
            for block in blocks:
                digest.update(block)
                size += len(block)
                stream.write(block)
        manifest["files"][name] = {"sha256": digest.hexdigest(), "size": size if declared is None else declared}
        archive.writestr("manifest.json", json.dumps(manifest))
    return out


def lie_about_size(path: Path, name: str, declared: int) -> None:
    """Change the uncompressed size that the zip's local header and central directory give for ``name``."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        offset = archive.getinfo(name).header_offset
    struct.pack_into("<I", raw, offset + 22, declared)
    central = raw.find(b"PK\x01\x02" + raw[offset + 4:offset + 16])  # same version, flags, method, time, date
    while raw[central + 46:central + 46 + len(name)] != name.encode():
        central = raw.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 24, declared)
    path.write_bytes(bytes(raw))


def nothing_installed(workspace: Workspace) -> bool:
    return not (workspace.results / DATASET / MODEL).exists() and not list(workspace.results.rglob(".install-*"))


def test_a_zip_with_a_listed_300_mb_member_of_zeros_is_refused_without_unpacking_it(tmp_path, a_model_zip,
                                                                                    a_workspace, monkeypatch):
    bomb = with_extra_member(a_model_zip, tmp_path / "bomb.zip", f"{MODEL}/zeros.bin", zeros(300 * MB))
    assert bomb.stat().st_size < 3 * MB
    monkeypatch.setattr(install, "extract_verified", lambda *a, **k: pytest.fail("unpacked a zip bomb"))
    with pytest.raises(AutoSegNetError, match=r"zeros\.bin.*compressed \d+:1.*more than 100:1"):
        install.install_model(bomb, a_workspace)
    assert nothing_installed(a_workspace)


def test_a_zip_over_the_size_cap_is_refused_before_anything_is_unpacked(a_model_zip, a_workspace, monkeypatch):
    monkeypatch.setattr(install, "extract_verified", lambda *a, **k: pytest.fail("unpacked an oversized zip"))
    with pytest.raises(AutoSegNetError, match=r"unpacks to [\d.]+kB.*--max-size 1kB.*--max-size"):
        install.install_model(a_model_zip, a_workspace, max_size=1000)
    assert nothing_installed(a_workspace)


def test_the_unpacked_bytes_are_counted_against_the_cap_while_unpacking(a_model_zip, a_workspace, monkeypatch):
    monkeypatch.setattr(install, "check_sizes", lambda *a, **k: 0)  # a zip whose directory passed the check
    with pytest.raises(AutoSegNetError, match=r"more than --max-size"):
        install.install_model(a_model_zip, a_workspace, max_size=1000)
    assert nothing_installed(a_workspace)


def test_a_zip_that_lies_about_a_member_size_is_refused_as_damaged(tmp_path, a_model_zip, a_workspace):
    name = f"{MODEL}/extra.bin"
    data = bytes(range(256)) * 256  # 64 KiB that deflate hardly shrinks
    liar = with_extra_member(a_model_zip, tmp_path / "liar.zip", name, data, level=6, declared=1000)
    lie_about_size(liar, name, 1000)  # directory and manifest say 1000 bytes; the data are 64 KiB
    with pytest.raises(AutoSegNetError, match=r"extra\.bin.*damaged"):
        install.install_model(liar, a_workspace)
    assert nothing_installed(a_workspace)


@pytest.mark.parametrize("text, size", [("8GB", 8 * 10**9), ("500 MB", 500 * 10**6), ("1.5GiB", 3 * 2**29),
                                        ("1000", 1000), ("20kb", 20_000)])
def test_max_size_is_read_with_decimal_and_binary_units(text, size):
    assert install.parse_size(text) == size


@pytest.mark.parametrize("text", ["8 parsecs", "GB", "-1GB", ""])
def test_a_max_size_without_a_number_and_unit_is_refused_with_an_example(text):
    with pytest.raises(AutoSegNetError, match=r"8GB"):
        install.parse_size(text)


def test_cli_install_model_takes_max_size_and_refuses_an_oversized_zip(a_model_zip, a_workspace, capsys):
    command = ["--workspace", str(a_workspace.results.parent), "install-model", str(a_model_zip), "--max-size"]
    assert main([*command, "1kB"]) == 2
    assert "more than --max-size 1kB" in capsys.readouterr().err
    assert nothing_installed(a_workspace)
    assert main([*command, "1GB"]) == 0
    assert (a_workspace.results / DATASET / MODEL).is_dir()


def test_a_zip_larger_than_the_free_disk_space_is_refused(a_model_zip, a_workspace, monkeypatch):
    monkeypatch.setattr(install.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 100})())
    with pytest.raises(AutoSegNetError, match=r"only 100B free"):
        install.install_model(a_model_zip, a_workspace)
    assert nothing_installed(a_workspace)


def test_a_read_only_workspace_gives_a_message_instead_of_a_traceback(a_model_zip, a_workspace, capsys,
                                                                     monkeypatch):
    mkdir, results = Path.mkdir, a_workspace.results

    def refusing(self, *args, **kwargs):
        if results in self.parents:
            raise PermissionError(13, "Permission denied", str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refusing)
    assert main(["--workspace", str(a_workspace.results.parent), "install-model", str(a_model_zip)]) == 2
    error = capsys.readouterr().err
    assert f"cannot install into {results / DATASET}: permission denied" in error and "--workspace" in error
