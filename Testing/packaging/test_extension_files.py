"""Guards for the Slicer extension packaging: catalog entry, CMake metadata, complete file lists, licence."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from Testing.packaging import cmake_lists
from Testing.packaging._helpers_cmake import commands, expanded_arguments, keyword_values

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT.parent / "shared" / "slicer" / "slicer-extension-catalog-entry-schema-v1.0.2.json"
MACRO = "slicerMacroBuildScriptedModule"
MACRO_KEYWORDS = ("NAME", "SCRIPTS", "RESOURCES", "WITH_GENERIC_TESTS", "WITH_SUBDIR", "VERBOSE")
FORBIDDEN_IN_ENGINE = {"slicer", "qt", "ctk", "vtk", "vtkmodules", "slicer_core", "PythonQt"}


def catalog_entry() -> dict:
    return json.loads((REPO_ROOT / "SlicerExtension.json").read_text())


def top_level_sets() -> dict[str, tuple[list[str], str]]:
    return {args[0]: (args[1:], raw) for name, args, raw in commands(REPO_ROOT / "CMakeLists.txt") if name == "set"}


# ----- catalog entry ---------------------------------------------------------------------------------------
def test_the_catalog_entry_validates_against_slicers_schema():
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip(f"catalog schema not found at {SCHEMA} (expected ../shared/slicer beside the repository)")
    jsonschema.validate(catalog_entry(), json.loads(SCHEMA.read_text()))


def test_the_catalog_entry_names_the_category_the_pytorch_dependency_and_a_slicer_repository():
    entry = catalog_entry()
    assert entry["category"] == "Segmentation" and entry["build_dependencies"] == ["PyTorch"]
    repository = entry["scm_url"].rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
    assert repository.startswith("Slicer") and not project_name().startswith("Slicer")


# ----- top-level CMakeLists.txt ---------------------------------------------------------------------------
def project_name() -> str:
    [args] = [args for name, args, _ in commands(REPO_ROOT / "CMakeLists.txt") if name == "project"]
    return args[0]


def test_the_cmake_project_is_the_extension_name():
    assert project_name() == "AutoSegNet"


@pytest.mark.parametrize("variable", ["EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                                      "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"])
def test_extension_metadata_is_set_on_a_single_line(variable):
    sets = top_level_sets()
    assert variable in sets, f"set({variable} ...) missing from CMakeLists.txt"
    assert "\n" not in sets[variable][1]


def committed_file_of_raw_url(url: str) -> Path:
    """The file of this repository that a ``https://raw.githubusercontent.com/<owner>/<repo>/<rev>/<path>`` names."""
    entry = catalog_entry()
    repository = entry["scm_url"].rstrip("/").removesuffix(".git").split("github.com/", 1)[-1]
    prefix = f"https://raw.githubusercontent.com/{repository}/{entry['scm_revision']}/"
    assert url.startswith(prefix) and url.endswith(".png"), f"{url} is not a raw PNG URL under {prefix}"
    return REPO_ROOT / url.removeprefix(prefix)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG header."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR", f"{path} is not a PNG"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_the_icon_url_is_a_raw_png_of_a_file_in_this_repository():
    [url] = top_level_sets()["EXTENSION_ICONURL"][0]
    assert png_size(committed_file_of_raw_url(url)) == (128, 128)


def test_the_screenshot_urls_name_small_pngs_committed_in_this_repository():
    urls = top_level_sets()["EXTENSION_SCREENSHOTURLS"][0]
    assert len(urls) == 1 and " " not in urls[0], "one screenshot URL (space-separated if more are added)"
    for path in map(committed_file_of_raw_url, urls[0].split()):
        assert path.is_file(), f"{path} missing: run python Resources/Screenshots/render_screenshot.py"
        width, height = png_size(path)
        assert 1000 <= width <= 1600 and 0.5 <= height / width <= 0.75
        assert path.stat().st_size < 500_000


@pytest.mark.slow
def test_the_screenshot_script_renders_the_screenshot_from_the_shared_ct(shared_data, tmp_path):
    output = tmp_path / "screenshot.png"
    script = REPO_ROOT / "Resources" / "Screenshots" / "render_screenshot.py"
    subprocess.run([sys.executable, str(script), "--data", str(shared_data / "totalseg_examples"), "--output",
                    str(output)], check=True, capture_output=True, timeout=300)
    assert png_size(output) == (1200, 700) and output.stat().st_size < 500_000


# ----- the oldest supported Slicer ------------------------------------------------------------------------
def module_minimum_slicer() -> str:
    """``"<major>.<minor>"`` the module itself requires at run time (``AutoSegNetSceneLib/slicer_version.py``)."""
    path = REPO_ROOT / "AutoSegNet" / "AutoSegNetSceneLib" / "slicer_version.py"
    spec = importlib.util.spec_from_file_location("autosegnet_slicer_version", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return ".".join(map(str, module.MINIMUM))


def test_the_oldest_supported_slicer_is_5_10():
    assert module_minimum_slicer() == "5.10"  # 5.10.0 and 5.12.3 are tested; Slicer 5.8 runs Python 3.9


def test_the_cmake_file_stops_on_a_slicer_older_than_the_module_needs_after_finding_slicer():
    """The catalog schema has no field for it (additionalProperties: false): CMake is where it is declared."""
    calls = commands(REPO_ROOT / "CMakeLists.txt")
    names = [name for name, _, _ in calls]
    assert top_level_sets()["AutoSegNet_MINIMUM_SLICER_VERSION"][0] == [module_minimum_slicer()]
    check = names.index("if")
    assert calls[check][1] == ["Slicer_VERSION", "VERSION_LESS", "AutoSegNet_MINIMUM_SLICER_VERSION"]
    assert names.index("find_package") < check < names.index("add_subdirectory")
    assert calls[check + 1][0] == "message" and calls[check + 1][1][0] == "FATAL_ERROR"
    schema_fields = json.loads(SCHEMA.read_text())["properties"] if SCHEMA.is_file() else {}
    assert not [field for field in schema_fields if "version" in field.lower() and "slicer" in field.lower()]


STUB_SLICER = {
    # What find_package(Slicer) and the top-level CMakeLists use from a Slicer build tree, nothing more.
    "SlicerConfig.cmake": 'set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")\n'
                          'set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n'
                          'set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/Empty.cmake")\n',
    "UseSlicer.cmake": "macro(slicerMacroBuildScriptedModule)\nendmacro()\n"
                       "macro(slicer_add_python_unittest)\nendmacro()\n",
    "Empty.cmake": "",
}


@pytest.mark.parametrize(("slicer_version", "accepted"), [("5.8", False), ("5.10", True), ("5.12", True)])
def test_configuring_against_each_slicer_version_accepts_only_supported_ones(tmp_path, slicer_version, accepted):
    """Real CMake on the real top-level CMakeLists.txt, against a stub Slicer build tree of the given version."""
    cmake = shutil.which("cmake")
    compilers = (shutil.which("cc") or shutil.which("gcc")) and (shutil.which("c++") or shutil.which("g++"))
    if cmake is None or not compilers:
        pytest.skip("cmake and a C/C++ compiler are needed to configure the extension (project() enables C and C++)")
    slicer_dir = tmp_path / "Slicer-build"
    slicer_dir.mkdir()
    for name, text in STUB_SLICER.items():
        (slicer_dir / name).write_text(text)
    # Slicer's CMake/SlicerConfigVersion.cmake.in sets PACKAGE_VERSION to Slicer_VERSION, "<major>.<minor>";
    # find_package(Slicer) turns it into Slicer_VERSION for the extension.
    (slicer_dir / "SlicerConfigVersion.cmake").write_text(
        f'set(PACKAGE_VERSION "{slicer_version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n')
    result = subprocess.run([cmake, "-S", str(REPO_ROOT), "-B", str(tmp_path / "build"), f"-DSlicer_DIR={slicer_dir}"],
                            capture_output=True, text=True, timeout=120)
    message = f"AutoSegNet requires Slicer {module_minimum_slicer()} or later; this Slicer is {slicer_version}"
    if accepted:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and message in " ".join(result.stderr.split()), result.stderr


def test_the_extension_depends_on_pytorch_and_builds_both_folders():
    assert top_level_sets()["EXTENSION_DEPENDS"][0] == ["PyTorch"]
    calls = commands(REPO_ROOT / "CMakeLists.txt")
    subdirs = [args[0] for name, args, _ in calls if name == "add_subdirectory"]
    assert subdirs == ["AutoSegNet", "AutoSegNetLib"]
    includes = [args[0] for name, args, _ in calls if name == "include"]
    assert includes == ["${Slicer_USE_FILE}", "${Slicer_EXTENSION_GENERATE_CONFIG}", "${Slicer_EXTENSION_CPACK}"]


# ----- module and engine CMakeLists: every file listed, every listed file present ---------------------------
def listed(folder: str) -> tuple[list[str], list[str], list[str]]:
    args = expanded_arguments(REPO_ROOT / folder / "CMakeLists.txt", MACRO)
    scripts = [s if s.endswith(".py") else f"{s}.py" for s in keyword_values(args, "SCRIPTS", MACRO_KEYWORDS)]
    return args, scripts, keyword_values(args, "RESOURCES", MACRO_KEYWORDS)


@pytest.mark.parametrize("folder", ["AutoSegNet", "AutoSegNetLib"])
def test_every_python_and_resource_file_is_listed_and_every_listed_file_exists(folder):
    _, scripts, resources = listed(folder)
    on_disk_scripts, on_disk_resources = cmake_lists.installed_files(REPO_ROOT / folder)
    hint = "run: python Testing/packaging/cmake_lists.py"
    assert sorted(set(on_disk_scripts) - set(scripts)) == [], f"not installed by {folder}/CMakeLists.txt; {hint}"
    assert sorted(set(on_disk_resources) - set(resources)) == [], f"resources not installed; {hint}"
    missing = [f for f in scripts + resources if not (REPO_ROOT / folder / f).is_file()]
    assert missing == [], f"listed in {folder}/CMakeLists.txt but missing; {hint}"


def test_the_module_is_built_with_generic_tests_and_registers_its_unit_test():
    args, scripts, resources = listed("AutoSegNet")
    assert args[:2] == ["NAME", "AutoSegNet"] and "WITH_GENERIC_TESTS" in args and "WITH_SUBDIR" not in args
    assert {"Resources/UI/AutoSegNet.ui", "Resources/Icons/AutoSegNet.png", "Resources/requirements.txt"} <= set(
        resources)
    text = (REPO_ROOT / "AutoSegNet" / "CMakeLists.txt").read_text()
    assert re.search(r"if\(BUILD_TESTING\)\s*(#[^\n]*\n\s*)*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)",
                     text)


def test_the_engine_is_built_as_a_package_beside_the_module_without_generic_tests():
    args, _, _ = listed("AutoSegNetLib")
    assert args[:2] == ["NAME", "AutoSegNetLib"] and "WITH_SUBDIR" in args and "WITH_GENERIC_TESTS" not in args


def test_only_the_module_file_sits_at_the_top_of_the_module_folder():
    """Slicer loads every top-level .py file of a module folder as a module; helpers live in sub-folders."""
    assert sorted(p.name for p in (REPO_ROOT / "AutoSegNet").glob("*.py")) == ["AutoSegNet.py"]


def test_the_generated_file_lists_are_up_to_date():
    stale = [str(p.relative_to(REPO_ROOT)) for p, content in cmake_lists.targets().items()
             if not p.is_file() or p.read_text() != content]
    assert stale == [], "run: python Testing/packaging/cmake_lists.py"


# ----- licence and the engine/Slicer boundary ------------------------------------------------------------
def test_the_licence_is_the_apache_2_text():
    text = (REPO_ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(str(node.args[0].value).split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "AutoSegNetLib").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_engine_never_imports_slicer_qt_ctk_or_vtk(path):
    assert imported_top_level_names(path) & FORBIDDEN_IN_ENGINE == set()
