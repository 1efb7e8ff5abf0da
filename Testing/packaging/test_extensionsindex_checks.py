"""The Slicer ExtensionsIndex's own checks, run on this repository without the network.

When the catalog entry is submitted (``SlicerExtension.json`` as ``AutoSegNet.json``), the index runs
``check_description_files.py`` on it and on a clone of ``scm_url``, and ``check_repository_structure.py`` on the
index itself (see ``extension-validation.yml``). The scripts are loaded from ``../shared/slicer/extensionsindex``;
what needs the network is replaced by a local equivalent or skipped, each with the reason.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from Testing.packaging._helpers_extensionsindex import (
    INDEX_SCRIPTS,
    REPO_ROOT,
    checks_run_by_the_index,
    clone_of_this_repository,
    index_script,
    offline_image_url_check,
)

EXTENSION_NAME = "AutoSegNet"  # the catalog entry is submitted to the index as AutoSegNet.json
CATALOG_ENTRY = REPO_ROOT / "SlicerExtension.json"
SCHEMA = INDEX_SCRIPTS.parent / "slicer-extension-catalog-entry-schema-v1.0.2.json"
# Index entries of the extensions named in build_dependencies (PyTorch.json is in Slicer/ExtensionsIndex, main).
DEPENDENCIES_IN_THE_INDEX = {"PyTorch": {"category": "Utilities", "scm_url": "https://github.com/fepegar/SlicerPyTorch.git"}}

# Checks that only look at the catalog entry.
ENTRY_CHECKS = ["check_extension_name", "check_category", "check_git_repository_name", "check_scm_url_syntax"]
# Checks that look at the cloned repository (the index's CMakeLists check downloads the icon and screenshots).
CLONE_CHECKS = ["check_cmakelists_content", "check_license_file", "check_repository_size"]
NETWORK_ONLY = {
    "check_clone_repository": "clones scm_url from GitHub; the tests use a local clone of this repository instead",
    "check_git_repository_topics": "asks the GitHub API for the repository's topics (needs '3d-slicer-extension')",
}


@pytest.fixture(scope="module")
def checks():
    return index_script("check_description_files")


@pytest.fixture(scope="module")
def a_catalog_entry() -> dict:
    return json.loads(CATALOG_ENTRY.read_text())


@pytest.fixture(scope="module")
def a_clone(tmp_path_factory) -> Path:
    return clone_of_this_repository(tmp_path_factory.mktemp("clone") / "SlicerAutoSegNet")


@pytest.fixture
def offline(checks, a_clone, a_catalog_entry, monkeypatch):
    """The index's checks with the image URLs and the schema looked up in the local files instead of downloaded."""
    monkeypatch.setattr(checks, "validate_image_url", offline_image_url_check(checks, a_clone, a_catalog_entry))
    if checks.requests is not None:
        monkeypatch.setattr(checks.requests, "get", _local_schema_download(checks.requests))
    return checks


def _local_schema_download(requests):
    """``requests.get`` that serves the catalog schema from ../shared/slicer and refuses any other URL."""

    def get(url, *args, **kwargs):
        if url.rsplit("/", 1)[-1] != SCHEMA.name or not SCHEMA.is_file():
            raise requests.ConnectionError(f"no network in the tests and no local copy of {url}")
        response = requests.Response()
        response.status_code, response.url, response._content = 200, url, SCHEMA.read_bytes()
        response.headers["Content-Type"] = "application/json"
        return response

    return get


def run_check(checks, name: str, *args, **kwargs) -> str:
    """Run one index check; fail with the index's own message when it rejects the repository."""
    if name in checks.UNAVAILABLE_ON_THIS_PYTHON:
        pytest.skip(f"{name} needs a newer Python (the index runs 3.12)")
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            details = getattr(checks, name)(EXTENSION_NAME, *args, **kwargs)
    except checks.ExtensionCheckError as error:
        pytest.fail(f"ExtensionsIndex {name} rejects the repository: {error}\n{output.getvalue()}")
    return f"{output.getvalue()}{details or ''}"


# ----- what the index runs -------------------------------------------------------------------------------
def test_every_check_the_index_runs_is_run_here_or_skipped_for_a_stated_reason(checks):
    covered = {*ENTRY_CHECKS, *CLONE_CHECKS, *NETWORK_ONLY, "check_json_schema", "check_json_file_format"}
    assert set(checks_run_by_the_index()) == covered


@pytest.mark.parametrize("name", sorted(NETWORK_ONLY))
def test_checks_that_need_github_are_skipped(name):
    pytest.skip(f"{name}: {NETWORK_ONLY[name]}")


# ----- the catalog entry ---------------------------------------------------------------------------------
def test_the_index_accepts_the_catalog_entry_file_format(checks, a_catalog_entry):
    run_check(checks, "check_json_file_format", a_catalog_entry, extension_file_path=str(CATALOG_ENTRY))


def test_the_index_validates_the_catalog_entry_against_the_schema_it_names(offline, a_catalog_entry):
    pytest.importorskip("requests", reason="the index's schema check needs requests (scripts/requirements.txt)")
    pytest.importorskip("jsonschema", reason="the index's schema check needs jsonschema (scripts/requirements.txt)")
    assert a_catalog_entry["$schema"].split("#")[0].endswith("/" + SCHEMA.name), "no local copy of that schema"
    run_check(offline, "check_json_schema", a_catalog_entry)


@pytest.mark.parametrize("name", ENTRY_CHECKS)
def test_the_index_accepts_the_catalog_entry(checks, a_catalog_entry, name):
    run_check(checks, name, a_catalog_entry)


# ----- the cloned repository -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLONE_CHECKS)
def test_the_index_accepts_the_cloned_repository(offline, a_catalog_entry, a_clone, name):
    run_check(offline, name, a_catalog_entry, cloned_repository_folder=str(a_clone))


def test_the_index_reads_the_screenshot_and_icon_urls_from_the_cmake_file(offline, a_catalog_entry, a_clone):
    report = run_check(offline, "check_cmakelists_content", a_catalog_entry, cloned_repository_folder=str(a_clone))
    assert "Extension icon URL: https://raw.githubusercontent.com/" in report
    assert "Extension screenshot URL: https://raw.githubusercontent.com/" in report


# ----- the index repository after the submission ---------------------------------------------------------
@pytest.fixture
def an_index_with_the_entry(tmp_path) -> Path:
    """An ExtensionsIndex checkout holding the scripts folder, our entry and the entries we depend on."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "README.md").write_text("Slicer ExtensionsIndex\n")
    shutil.copy(CATALOG_ENTRY, tmp_path / f"{EXTENSION_NAME}.json")
    for name, entry in DEPENDENCIES_IN_THE_INDEX.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(entry))
    return tmp_path


def test_the_submission_adds_only_a_json_file_to_the_index(an_index_with_the_entry, monkeypatch):
    structure = index_script("check_repository_structure")
    # check_filenames() looks at the folder above the script's own folder: the index checkout
    script_in_the_index = an_index_with_the_entry / "scripts" / Path(structure.__file__).name
    monkeypatch.setattr(structure, "__file__", str(script_in_the_index))
    assert structure.check_filenames() == []


def test_every_build_dependency_is_an_extension_of_the_index(checks, an_index_with_the_entry):
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            checks.check_dependencies(str(an_index_with_the_entry))
    except checks.ExtensionDependencyError as error:
        pytest.fail(f"ExtensionsIndex dependency check: {error}")


def test_the_whole_index_run_passes_offline(offline, a_clone, an_index_with_the_entry, monkeypatch):
    """``check_description_files.py AutoSegNet.json`` as the index workflow calls it, clone and topics offline."""
    pytest.importorskip("requests", reason="the index's schema check needs requests (scripts/requirements.txt)")

    def clone(extension_name, metadata, cloned_repository_folder):  # no GitHub: copy the local clone
        shutil.copytree(a_clone, cloned_repository_folder, dirs_exist_ok=True)

    monkeypatch.setattr(offline, "check_clone_repository", clone)
    monkeypatch.setattr(offline, "check_git_repository_topics", lambda *args: None)  # GitHub API
    monkeypatch.setattr(offline, "safe_cleanup_directory", lambda path: shutil.rmtree(path) is None)
    monkeypatch.chdir(an_index_with_the_entry)
    monkeypatch.setattr("sys.argv", ["check_description_files.py", f"{EXTENSION_NAME}.json"])
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        status = offline.main()
    assert status == 0 and ":x:" not in report.getvalue(), report.getvalue()
