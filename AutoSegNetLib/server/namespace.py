"""One workspace per client, and names and paths that cannot leave it.

A client's namespace is ``<server workspace>/clients/<name>/`` with the usual ``raw/``, ``preprocessed/``,
``results/`` plus ``versions/`` and ``jobs/``. Every path a client gives is relative to it; each part must be a
plain name (letters, digits, ``.``, ``_``, ``-``; no ``..``, no hidden names) and the resolved path must stay
inside, symbolic links included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.server.config import bearer_token, match_token
from AutoSegNetLib.workspace import Workspace

PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
DATASET = re.compile(r"^Dataset\d{3}_[A-Za-z0-9_-]{1,100}$")
CASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,150}$")
WRITABLE = ("jobs",)  # where files may be uploaded one by one (prediction inputs)
MAX_DEPTH = 12


class NotAllowedError(AutoSegNetError):
    """A name or path a client may not use (HTTP 400)."""


@dataclass(frozen=True)
class Namespace:
    """A client's workspace on the server."""

    name: str
    root: Path

    @property
    def workspace(self) -> Workspace:
        return Workspace.at(self.root)

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    def create(self) -> Namespace:
        self.workspace.create()
        self.jobs.mkdir(parents=True, exist_ok=True)
        return self

    def resolve(self, relative: str, writable: bool = False) -> Path:
        """The absolute path of ``relative`` inside the namespace; ``writable``: only under :data:`WRITABLE`."""
        parts = [p for p in str(relative).replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or len(parts) > MAX_DEPTH or any(not PART.match(p) for p in parts):
            raise NotAllowedError(f"{relative!r} is not a path inside your workspace: use relative paths of plain "
                                  "names (letters, digits, '.', '_', '-'), no '..'.")
        if writable and parts[0] not in WRITABLE:
            raise NotAllowedError(f"{relative!r}: files may only be uploaded under {', '.join(WRITABLE)}/.")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise NotAllowedError(f"{relative!r} leads outside your workspace.")
        return path

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()


def namespace_for(server_root: Path, client: str) -> Namespace:
    return Namespace(client, Path(server_root).resolve() / "clients" / client).create()


def client_for_token(authorization: str | None, tokens: dict[str, str]) -> str | None:
    """The client whose token is in ``Authorization: Bearer <token>``, else None; compares in constant time
    against every token (the time taken does not tell which token, or how much of one, was right)."""
    given = bearer_token(authorization)
    return None if given is None else match_token(given, tokens)


def check_dataset(name: str) -> str:
    if not DATASET.match(name):
        raise NotAllowedError(f"{name!r} is not a dataset folder name; use DatasetXXX_Name (three digits, then "
                              "letters, digits, '_' or '-').")
    return name


def check_case(case: str) -> str:
    if not CASE.match(case):
        raise NotAllowedError(f"{case!r} is not a case identifier; use letters, digits, '.', '_' and '-'.")
    return case
