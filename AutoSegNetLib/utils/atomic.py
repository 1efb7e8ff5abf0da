"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A crash while writing never leaves a half-written file under the final name. Temporaries are named
``.<stem>.<pid>@<host>-<random><suffix>`` so that :func:`remove_stale_temporaries` can tell those of dead
writers from those of writers still running. Files are created with mode ``0o666`` less the umask, like any
other file the user creates (labels and models are shared between users of a lab). With ``durable=True`` the
data reach the disk (``fsync``) before the rename, so a power cut leaves the old or the new file, never an
empty one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: A temporary whose writer cannot be checked (another machine, or named before writers were tagged) is left
#: alone until it has not been modified for this long (seconds); writing a checkpoint takes seconds.
STALE_AFTER_S = 3600.0
_TAG = re.compile(r"^(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)-[0-9a-f]{8}$")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``.

    ``suffix`` defaults to the target's full suffix (e.g. ``.nii.gz``) so writers that choose the
    format from the file ending still work. ``durable``: ``fsync`` the file before and the folder after the
    rename. On error the temporary file is removed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes) or ".tmp"
    tmp = _create_temporary(target, suffix)
    try:
        yield tmp
        if durable:
            _fsync_file(tmp)
        os.replace(tmp, target)
        if durable:
            _fsync_folder(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(target: str | os.PathLike, write: Callable[[Path], None], durable: bool = False) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target, durable=durable) as tmp:
        write(tmp)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside ``target``; on success it becomes ``target`` (replacing an existing one
    only with ``replace``), on error it is removed and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _create_temporary(target, ".tmp", folder=True)
    try:
        yield staging
        _move_folder_into_place(staging, target, replace)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _move_folder_into_place(staging: Path, target: Path, replace: bool) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is first renamed aside, then deleted."""
    if not target.exists():
        os.replace(staging, target)
        return
    if not replace:
        raise FileExistsError(f"{target} exists already.")
    old = target.with_name(f".{target.name}.{_writer_tag()}-{secrets.token_hex(4)}.old")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_json(target: str | os.PathLike, data: Any, indent: int = 2, durable: bool = False) -> None:
    """Write ``data`` as JSON atomically (sorted nothing: key order is kept for readability); ``durable``
    as in :func:`atomic_path`."""
    with atomic_path(target, suffix=".json", durable=durable) as tmp:
        tmp.write_text(json.dumps(data, indent=indent, default=_json_default) + "\n")


def remove_stale_temporaries(target: str | os.PathLike, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporaries of ``target`` (``.<stem>.*<suffix>``) left by writers that died; returns them.

    A temporary is stale when its writer ran on this machine and is gone, or when it has not been modified for
    ``max_age_s`` seconds (writers on other machines, temporaries named before writers were tagged).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefix, suffix = f".{target.stem}.", "".join(target.suffixes) or ".tmp"
    removed = []
    for path in target.parent.iterdir():
        name = path.name
        if not (name.startswith(prefix) and name.endswith(suffix)) or not path.is_file():
            continue
        if _is_stale(path, name[len(prefix):len(name) - len(suffix)], max_age_s):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                log.info("Removed %s, left by a writer that did not finish.", path)
                removed.append(path)
    return removed


def _is_stale(path: Path, tag: str, max_age_s: float) -> bool:
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age >= max_age_s:
        return True
    match = _TAG.match(tag)
    return bool(match) and match.group("host") == _host() and not _process_alive(int(match.group("pid")))


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (on Windows: assumed, as it cannot be asked safely)."""
    if os.name == "nt":
        return True  # os.kill(pid, 0) would terminate the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32]


def _writer_tag() -> str:
    return f"{os.getpid()}@{_host()}"


def _create_temporary(target: Path, suffix: str, folder: bool = False) -> Path:
    """Create a new file (or folder) beside ``target`` with mode 0o666 (0o777) less the umask."""
    for _ in range(100):
        tmp = target.with_name(f".{target.stem}.{_writer_tag()}-{secrets.token_hex(4)}{suffix}")
        try:
            if folder:
                os.mkdir(tmp, 0o777)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside {target}: 100 names taken.")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; some file systems cannot, which is then ignored)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(obj: Any) -> Any:
    """Make NumPy scalars/arrays and paths JSON-serialisable."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a syntax error names the file and line."""
    from AutoSegNetLib.errors import DatasetFormatError

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetFormatError(f"{path} does not exist.") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise DatasetFormatError(f"{path} is not valid JSON ({where}): {exc.msg}.") from None
