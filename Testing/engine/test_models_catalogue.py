"""``models list|show|install``: the model index is validated field by field, read from a file or a URL, and an
entry is downloaded (size and sha256 from the index checked) and installed."""

from __future__ import annotations

import copy
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_models_download import MODEL, ZipServer, a_model_zip, closed_port  # noqa: F401 - a_model_zip: fixture

from AutoSegNetLib.cli import main
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.catalogue import (
    DEFAULT_INDEX,
    INDEX_FORMAT,
    CatalogueEntry,
    entries,
    install_entry,
    load_index,
    parse_index,
)
from AutoSegNetLib.workspace import Workspace

DATASET = "Dataset001_Tiny"
REPO = Path(__file__).resolve().parents[2]


def an_entry(url: str, data: bytes, **changes) -> dict:
    entry = {
        "name": "tiny-3d", "url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
        "labels": {"background": 0, "left": 1, "right": 2}, "channels": {"0": "MR0"}, "configuration": "3d_fullres",
        "citation": "", "licence": "CC-BY-4.0", "description": "a tiny model made in a test",
    }
    entry.update(changes)
    return entry


def an_index(*items: dict) -> dict:
    return {"format": INDEX_FORMAT, "version": 1, "comment": "made in a test", "entries": list(items)}


@pytest.fixture
def a_zip_file(a_model_zip: bytes, tmp_path: Path) -> Path:  # noqa: F811 - the imported fixture
    (tmp_path / "model.zip").write_bytes(a_model_zip)
    return tmp_path / "model.zip"


@pytest.fixture
def an_index_file(a_zip_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "index.json"
    path.write_text(json.dumps(an_index(an_entry(a_zip_file.as_uri(), a_zip_file.read_bytes()))))
    return path


@pytest.fixture
def a_workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "ws").create()


def test_the_shipped_index_is_valid_and_lists_only_https_downloads_with_a_licence() -> None:
    index = load_index()
    assert index.source == str(DEFAULT_INDEX) and "sha256" in index.comment
    assert all(e.url.startswith("https://") and e.licence for e in index.entries)


def test_list_and_show_print_the_entries(an_index_file: Path, capsys) -> None:
    assert main(["models", "list", "--index", str(an_index_file)]) == 0
    out = capsys.readouterr().out
    assert "tiny-3d" in out and "3d_fullres" in out and "CC-BY-4.0" in out
    assert main(["models", "show", "tiny-3d", "--index", str(an_index_file)]) == 0
    out = capsys.readouterr().out
    assert "licence        CC-BY-4.0" in out and "channels       {'0': 'MR0'}" in out


def test_json_progress_lists_the_entries_as_a_done_event(an_index_file: Path, capsys) -> None:
    assert main(["--progress", "json", "models", "list", "--index", str(an_index_file)]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["event"] == "done" and [e["name"] for e in done["entries"]] == ["tiny-3d"]
    assert done["entries"][0] == entries(an_index_file)[0].to_dict()


def test_install_downloads_checks_and_installs_the_entry(an_index_file: Path, a_workspace: Workspace) -> None:
    command = ["--workspace", str(a_workspace.results.parent), "models", "install", "tiny-3d"]
    assert main([*command, "--index", str(an_index_file)]) == 0
    assert (a_workspace.results / DATASET / MODEL / "fold_0" / "checkpoint_final.pth").is_file()


def test_an_entry_whose_zip_differs_from_its_sha256_is_not_installed(a_zip_file, a_workspace) -> None:
    entry = CatalogueEntry(**an_entry(a_zip_file.as_uri(), a_zip_file.read_bytes(), sha256="1" * 64))
    with pytest.raises(AutoSegNetError, match="sha256 of the download is"):
        install_entry(entry, a_workspace)
    assert not (a_workspace.results / DATASET).exists()


def test_the_index_and_the_zip_can_come_from_a_server(a_model_zip, a_workspace) -> None:  # noqa: F811
    with ZipServer({"/model.zip": a_model_zip}) as server:
        server.files["/index.json"] = json.dumps(an_index(an_entry(server.url("/model.zip"), a_model_zip))).encode()
        index = load_index(server.url("/index.json"))
        installed = install_entry(index.entry("tiny-3d"), a_workspace)
    assert installed.kind == "autosegnet" and installed.folders == [a_workspace.results / DATASET / MODEL]


def test_an_unreachable_index_says_to_pass_a_file(capsys) -> None:
    port = closed_port()
    assert main(["models", "list", "--index", f"https://127.0.0.1:{port}/index.json"]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach 127.0.0.1:{port}" in err and "--index FILE" in err


def test_an_unknown_name_lists_the_known_ones(an_index_file: Path, capsys) -> None:
    assert main(["models", "show", "tiny3d", "--index", str(an_index_file)]) == 2
    assert "Did you mean 'tiny-3d'?" in capsys.readouterr().err
    assert main(["models", "install", "--index", str(an_index_file)]) == 2
    assert "needs the model's name" in capsys.readouterr().err


GOOD = an_entry("https://example.org/releases/tiny.zip", b"zip bytes")
BROKEN = {  # the entry, what the error says after "entry 0 ('tiny-3d'): "
    "missing field": ({k: v for k, v in GOOD.items() if k != "licence"}, "field(s) 'licence' missing"),
    "unknown field": ({**GOOD, "licence_url": "x"}, "unknown field 'licence_url'. Did you mean 'licence'?"),
    "short sha256": ({**GOOD, "sha256": "abc"}, "field 'sha256' 'abc' is not a sha256"),
    "ftp url": ({**GOOD, "url": "ftp://x/y.zip"}, "field 'url': 'ftp://x/y.zip' is not a download URL"),
    "size as text": ({**GOOD, "size": "12MB"}, "field 'size' must be the zip's size in bytes"),
    "labels as a list": ({**GOOD, "labels": ["liver"]}, "field 'labels' must map label names to values"),
    "channels by name": ({**GOOD, "channels": {"CT": "0"}}, "field 'channels' must map channel numbers"),
    "empty licence": ({**GOOD, "licence": " "}, "field 'licence' must be a non-empty string"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_entry_is_refused_naming_the_entry_and_the_field(case: str) -> None:
    item, message = BROKEN[case]
    with pytest.raises(AutoSegNetError, match=re.escape(f"Model index test.json: entry 0 ('tiny-3d'): {message}")):
        parse_index(an_index(item), "test.json")


def test_entries_that_are_no_objects_or_badly_named_are_refused_by_their_position() -> None:
    with pytest.raises(AutoSegNetError, match=re.escape("test.json: entry 1 must be an object with the fields")):
        parse_index(an_index(copy.deepcopy(GOOD), "tiny-3d"), "test.json")
    with pytest.raises(AutoSegNetError, match=re.escape("entry 0 ('tiny 3d'): field 'name' must be a name of")):
        parse_index(an_index({**GOOD, "name": "tiny 3d"}), "test.json")


def test_the_index_itself_is_checked() -> None:
    with pytest.raises(AutoSegNetError, match="field 'format' must be 'autosegnet-model-index'"):
        parse_index({"entries": []}, "i.json")
    with pytest.raises(AutoSegNetError, match="version 2 is not supported"):
        parse_index({**an_index(), "version": 2}, "i.json")
    with pytest.raises(AutoSegNetError, match="unknown field 'models'"):
        parse_index({**an_index(), "models": []}, "i.json")
    with pytest.raises(AutoSegNetError, match="several entries are called 'tiny-3d'"):
        parse_index(an_index(GOOD, GOOD), "i.json")


def test_reading_the_catalogue_does_not_import_torch() -> None:
    """The Slicer module may list models in its own process: that must not load PyTorch."""
    code = "import sys, AutoSegNetLib.models.catalogue as c; c.entries(); print(sorted(m for m in sys.modules if " \
           "m.split('.')[0] in ('torch', 'numpy', 'SimpleITK')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
