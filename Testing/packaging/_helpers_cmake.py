"""A small reader for the CMake files of the extension: commands, arguments and ``set()`` variables."""

from __future__ import annotations

import re
from pathlib import Path

COMMAND_START = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|([^\s"]+)')


def strip_comments(text: str) -> str:
    lines = []
    for line in text.splitlines():
        out, quoted = [], False
        for char in line:
            if char == '"':
                quoted = not quoted
            if char == "#" and not quoted:
                break
            out.append(char)
        lines.append("".join(out))
    return "\n".join(lines)


def commands(path: Path) -> list[tuple[str, list[str], str]]:
    """``(name, arguments, raw text)`` of every command call, in order (parentheses inside quotes allowed)."""
    text = strip_comments(Path(path).read_text())
    found, position = [], 0
    while (match := COMMAND_START.search(text, position)) is not None:
        end = _closing_parenthesis(text, match.end())
        body = text[match.end():end]
        args = [quoted if quoted or not plain else plain for quoted, plain in TOKEN.findall(body)]
        found.append((match.group(1), args, text[match.start():end + 1]))
        position = end + 1
    return found


def _closing_parenthesis(text: str, start: int) -> int:
    depth, quoted, index = 1, False, start
    while index < len(text):
        char = text[index]
        if char == "\\" and quoted:
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise ValueError("unbalanced parentheses in CMake file")


def expanded_arguments(path: Path, command: str) -> list[str]:
    """Arguments of the first ``command(...)`` with ``${VAR}`` replaced by the file's ``set(VAR ...)`` values."""
    variables: dict[str, list[str]] = {}
    for name, args, _ in commands(path):
        if name == "set" and args:
            variables[args[0]] = [v for a in args[1:] for v in _expand(a, variables)]
        if name == command:
            return [v for a in args for v in _expand(a, variables)]
    raise LookupError(f"{command}() not found in {path}")


def _expand(token: str, variables: dict[str, list[str]]) -> list[str]:
    whole = re.fullmatch(r"\$\{(\w+)\}", token)
    if whole:
        return list(variables.get(whole.group(1), []))
    return [re.sub(r"\$\{(\w+)\}", lambda m: " ".join(variables.get(m.group(1), [])), token)]


def keyword_values(arguments: list[str], keyword: str, keywords: tuple[str, ...]) -> list[str]:
    """Values after ``keyword`` up to the next keyword (cmake_parse_arguments style)."""
    values, active = [], False
    for arg in arguments:
        if arg in keywords:
            active = arg == keyword
        elif active:
            values.append(arg)
    return values
