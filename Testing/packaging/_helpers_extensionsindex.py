"""Load the Slicer ExtensionsIndex's check scripts from ``../shared/slicer/extensionsindex`` and run them offline.

The scripts are used as they are (never copied into this repository). The index runs them with Python 3.12
(``extension-validation.yml``); on an older Python a top-level function that uses 3.12-only syntax is blanked out
when the file is loaded (line numbers kept), and the tests that would need it skip.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INDEX_SCRIPTS = REPO_ROOT.parent / "shared" / "slicer" / "extensionsindex"
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")  # PNG, JPEG, GIF
_LOADED: dict[str, ModuleType] = {}


def index_script(name: str) -> ModuleType:
    """The index script ``<name>.py`` as a module; skips the test when the shared folder is absent."""
    if name in _LOADED:
        return _LOADED[name]
    path = INDEX_SCRIPTS / f"{name}.py"
    if not path.is_file():
        pytest.skip(f"ExtensionsIndex script not found at {path} "
                    "(expected ../shared/slicer/extensionsindex beside the repository)")
    source, dropped = path.read_text(), []
    while True:
        try:
            code = compile(source, str(path), "exec")
            break
        except SyntaxError as error:
            source, function = _blank_function_at(source, error.lineno or 0)
            if function is None:
                raise
            dropped.append(function)
    module = ModuleType(f"extensionsindex_{name}")
    module.__file__ = str(path)
    module.__dict__["UNAVAILABLE_ON_THIS_PYTHON"] = tuple(dropped)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a warning at import when `requests` is missing
        exec(code, module.__dict__)
    _LOADED[name] = module
    return module


def _blank_function_at(source: str, line_number: int) -> tuple[str, str | None]:
    """``source`` with the top-level ``def`` holding ``line_number`` (1-based) replaced by empty lines."""
    lines = source.splitlines(keepends=True)
    starts = [n for n, line in enumerate(lines[:line_number]) if line.startswith("def ")]
    if not starts:
        return source, None
    start = starts[-1]
    end = next((n for n in range(start + 1, len(lines)) if lines[n].strip() and not lines[n][0].isspace()),
               len(lines))
    name = re.match(r"def (\w+)", lines[start]).group(1)
    return "".join(lines[:start] + ["\n"] * (end - start) + lines[end:]), name


def checks_run_by_the_index() -> list[str]:
    """Names of the check functions that ``check_description_files.main()`` runs on every catalog entry."""
    source = (INDEX_SCRIPTS / "check_description_files.py").read_text()
    return re.findall(r'\(\s*"[^"]+",\s*(check_\w+),', source)


def clone_of_this_repository(destination: Path) -> Path:
    """What ``git clone <scm_url>`` gives: this repository's history plus its tracked and not-ignored files.

    Made from the local repository (the index clones from GitHub, which these tests cannot reach), with the
    working tree's current files so that uncommitted changes are checked too.
    """
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not found: cannot make a local clone for the ExtensionsIndex checks")
    listed = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip(f"{REPO_ROOT} is not a git working tree: {listed.stderr.decode().strip()}")
    subprocess.run([git, "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(destination)], check=True,
                   capture_output=True)
    for relative in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / relative
        if source.is_file():  # not deleted in the working tree, not a submodule folder
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def raw_url_prefix(catalog_entry: dict) -> str:
    """``https://raw.githubusercontent.com/<owner>/<repository>/<revision>/`` of the catalog entry's repository."""
    path = urllib.parse.urlsplit(catalog_entry["scm_url"]).path.strip("/").removesuffix(".git")
    return f"https://raw.githubusercontent.com/{path}/{catalog_entry.get('scm_revision', 'main')}/"


def offline_image_url_check(module: ModuleType, clone: Path, catalog_entry: dict):
    """A stand-in for the index's ``validate_image_url``, which downloads the URL and wants an image content type.

    Without the network: the URL must be a raw GitHub URL of a file of the catalog entry's repository at its
    ``scm_revision``, and that file, in ``clone``, must be a PNG, JPEG or GIF image.
    """
    prefix = raw_url_prefix(catalog_entry)

    def validate_image_url(url, url_type, extension_name, check_name):
        if not url.startswith(prefix):
            raise module.ExtensionCheckError(extension_name, check_name,
                                             f"{url_type} '{url}' is not a raw URL under {prefix}")
        path = clone / urllib.parse.unquote(url.removeprefix(prefix))
        if not path.is_file():
            raise module.ExtensionCheckError(extension_name, check_name,
                                             f"{url_type} '{url}': {path.relative_to(clone)} is not in the repository")
        if not path.read_bytes().startswith(IMAGE_SIGNATURES):
            raise module.ExtensionCheckError(extension_name, check_name,
                                             f"{url_type} '{url}' is not a PNG, JPEG or GIF image")

    return validate_image_url
