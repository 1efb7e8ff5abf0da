"""Which engine commands a client may run, and their arguments mapped into the client's workspace.

A client sends a command name and its arguments as the engine's command line spells them, with every path
relative to its workspace (``raw/...``, ``versions/...``, ``jobs/...``). The server refuses commands that are
not listed here and options it sets itself (``--workspace``, ``--stop-file``, ``--progress``), resolves the
path options (outputs only under ``jobs/``), refuses path-like values anywhere else, and parses the result with
the engine's own parser, so a typo is a 400 answer rather than a failed job.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from AutoSegNetLib.server.namespace import Namespace, NotAllowedError


@dataclass(frozen=True)
class CommandRule:
    """``inputs``/``outputs``: options whose value is a path read/written; ``path_first``: the first positional
    argument is a path read (install-model's zip); ``gpu``: takes the one GPU slot (runs after the previous one)."""

    inputs: frozenset[str] = frozenset()
    outputs: frozenset[str] = frozenset()
    path_first: bool = False
    gpu: bool = False


RULES: dict[str, CommandRule] = {
    "verify": CommandRule(outputs=frozenset({"--report"})),
    "plan-and-preprocess": CommandRule(gpu=True),
    "preprocess": CommandRule(gpu=True),
    "train": CommandRule(inputs=frozenset({"--pretrained", "-pretrained_weights", "--config"}), gpu=True),
    "predict": CommandRule(inputs=frozenset({"-i", "--input", "--model-folder", "-m", "--lowres-model-folder"}),
                           outputs=frozenset({"-o", "--output"})),
    "export-model": CommandRule(outputs=frozenset({"-o", "--output"})),
    "install-model": CommandRule(path_first=True),
    "version": CommandRule(inputs=frozenset({"--based-on"})),
    "models": CommandRule(),  # the catalogue: list, show, install (downloads on the server)
}
SERVER_OPTIONS = ("--workspace", "--stop-file", "--progress")


def resolve_arguments(namespace: Namespace, command: str, args: Sequence[str]) -> list[str]:
    """The engine arguments for ``command`` with the client's relative paths made absolute; raises
    :class:`NotAllowedError` with what is wrong."""
    rule = RULES.get(command)
    if rule is None:
        raise NotAllowedError(f"Command {command!r} cannot be run on the server; allowed: {', '.join(sorted(RULES))}.")
    resolved, path_option, first = [], None, rule.path_first
    for token in map(str, args):
        name = token.split("=", 1)[0]
        if name in SERVER_OPTIONS:
            raise NotAllowedError(f"{name} is set by the server; leave it out.")
        if "=" in token and name in rule.inputs | rule.outputs:
            raise NotAllowedError(f"Write {name} and its path as two arguments, not {token!r}.")
        if path_option is not None:
            resolved.append(str(namespace.resolve(token, writable=path_option in rule.outputs)))
            path_option = None
        elif token in rule.inputs | rule.outputs:
            resolved.append(token)
            path_option = token
        elif first and not token.startswith("-"):
            resolved.append(str(namespace.resolve(token)))
            first = False
        else:
            _refuse_path_like(token)
            resolved.append(token)
    if path_option is not None:
        raise NotAllowedError(f"{path_option} needs a path after it.")
    _parse_with_engine(command, resolved)
    return resolved


def _refuse_path_like(token: str) -> None:
    if "/" in token or "\\" in token or token.startswith("~") or token.startswith(".."):
        raise NotAllowedError(f"{token!r} looks like a path; only the path options of the command take paths, "
                         "relative to your workspace.")


def _parse_with_engine(command: str, args: list[str]) -> None:
    from AutoSegNetLib.cli import build_parser

    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            build_parser(only=command).parse_args([command, *args])
    except SystemExit as exc:
        message = errors.getvalue().strip().splitlines()
        raise NotAllowedError(f"autosegnet {command}: {message[-1] if message else 'invalid arguments'}") from exc
