"""The code-structure rules of docs/decisions/0020 and STYLE.md, checked on every product file.

- no formatter markers (the code is not run through a formatter; see the decision);
- no product module over 400 lines and no function over 50 (a long one is split where it reads best);
- the stages import bottom-up: inference never imports evaluation or training.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("AutoSegNetLib", "AutoSegNet")
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 50
MARKER = "# " + "fmt:"  # spelt in two parts so that this file does not carry it


def tracked_python_files(*roots: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--", *roots], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files cannot be listed")
    return [REPO / name for name in listed.stdout.split() if name.endswith(".py") and (REPO / name).is_file()]


def test_no_file_carries_formatter_markers():
    marked = [f"{p.relative_to(REPO)}:{n}" for p in tracked_python_files(".")
              for n, line in enumerate(p.read_text().splitlines(), 1) if MARKER in line]
    assert marked == []


def test_the_formatter_is_switched_off_for_every_file_even_when_an_editor_names_one():
    text = (REPO / "pyproject.toml").read_text()  # (no tomllib on Python 3.10)
    format_section = text.split("[tool.ruff.format]", 1)[1].split("\n[", 1)[0]
    assert "\nforce-exclude = true" in text and '"**/*.py"' in format_section


def test_no_product_module_is_over_400_lines_and_no_function_over_50():
    too_long = []
    for path in tracked_python_files(*PRODUCT):
        source = path.read_text()
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_inference_imports_neither_evaluation_nor_training():
    arrows = [f"{p.relative_to(REPO)} -> {m}" for p in tracked_python_files("AutoSegNetLib/inference")
              for m in _imported_modules(p)
              if m.startswith(("AutoSegNetLib.evaluation", "AutoSegNetLib.training"))]
    assert arrows == []
