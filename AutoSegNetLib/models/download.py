"""``download-model``: fetch a model zip over https, http or file://, resumably, and check it before installing.

The bytes go to ``<name>-<url hash>.part`` in the workspace's download folder (:func:`download_folder`), with a
small ``.part.json`` beside it that remembers the server's validator (``ETag`` / ``Last-Modified``). A download
that broke off, was stopped (``--stop-file``) or failed to install is continued by running the same command
again: an HTTP ``Range`` request asks for the missing bytes only (``If-Range`` makes the server send the whole
file again if it changed meanwhile; a server that ignores ``Range`` simply sends everything).

Checked before anything is installed: the size the server announces (``Content-Length`` / ``Content-Range``)
against the expected size (model index) and the size cap (``--max-size``), the bytes received against the
announced size, and the sha256 against the expected one (``--sha256`` / model index). A file that fails the
size or sha256 check is deleted (it cannot be resumed into the right one). The ``.part`` file is removed once the
model is installed (:func:`download_and_install`).

A host that cannot be reached (offline, DNS failure, refused connection, timeout) gives an error that says how
to install without this machine reaching the network: download the zip elsewhere, run ``install-model``.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.install_any import Installed, InstallOptions, install_zip
from AutoSegNetLib.models.manifest import sha256_of
from AutoSegNetLib.models.sizes import DEFAULT_MAX_SIZE, format_size
from AutoSegNetLib.models.url_sources import (
    DEFAULT_TIMEOUT_S,
    INSTALL_HINT,
    Opened,
    Restart,
    check_url,
    open_source,
)
from AutoSegNetLib.utils.atomic import read_json, write_json
from AutoSegNetLib.utils.locks import FileLock
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

#: The download folder's name inside the workspace's results folder (hidden: not a dataset).
DOWNLOAD_FOLDER = ".downloads"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: ``progress(bytes_done, bytes_total_or_None)``, called after every block received.
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class DownloadRequest:
    """What to download and what it must be: ``sha256`` (hex) and ``size`` (bytes) when known; ``max_size``
    (bytes) refuses anything larger; ``timeout_s`` per network operation."""

    url: str
    sha256: str | None = None
    size: int | None = None
    max_size: int = DEFAULT_MAX_SIZE
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        check_url(self.url)
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", check_sha256(self.sha256, "--sha256"))


@dataclass(frozen=True)
class Download:
    """A complete, checked download: its ``path`` (the ``.part`` file), ``size`` in bytes, ``sha256`` and how
    many bytes an earlier attempt had already fetched (``resumed_from``)."""

    path: Path
    size: int
    sha256: str
    resumed_from: int


# ----- the stage -------------------------------------------------------------------------------------------------
def download_folder(workspace: Workspace) -> Path:
    """Where partial and finished downloads of ``workspace`` live (``results/.downloads``)."""
    return workspace.results / DOWNLOAD_FOLDER


def download_and_install(request: DownloadRequest, workspace: Workspace, options: InstallOptions | None = None,
                         progress: ProgressCallback | None = None, stop: StopRequest | None = None) -> Installed:
    """Download ``request`` into the workspace's download folder, check it, install it (AutoSegNet or nnU-Net v2
    zip) and delete the download. A failed install keeps the checked download for the next attempt."""
    folder = download_folder(workspace)
    with _lock(request.url, folder):
        downloaded = _download(request, folder, progress, stop)
        installed = install_zip(downloaded.path, workspace, options or InstallOptions(max_size=request.max_size),
                                stop)
        discard(downloaded.path)
    return installed


def download(request: DownloadRequest, folder: Path, progress: ProgressCallback | None = None,
             stop: StopRequest | None = None) -> Download:
    """Fetch ``request.url`` into ``folder`` (continuing an earlier partial download) and check size and sha256.

    One process at a time per URL and folder: a second gets an error naming the first."""
    with _lock(request.url, folder):
        return _download(request, folder, progress, stop)


def _download(request: DownloadRequest, folder: Path, progress: ProgressCallback | None,
              stop: StopRequest | None) -> Download:
    part = part_path(request.url, folder)
    folder.mkdir(parents=True, exist_ok=True)
    offset, validator = _resume_point(part, request.url)
    try:
        opened = open_source(request.url, offset, validator, request.timeout_s)
    except Restart:
        discard(part)
        opened = open_source(request.url, 0, None, request.timeout_s)
    with opened.stream:
        _check_announced_size(request, opened.total)
        write_json(_state_path(part), {"url": request.url, "validator": opened.validator, "total": opened.total})
        if opened.start:
            log.info("Resuming the download of %s at %s.", request.url, format_size(opened.start))
        _receive(opened, part, request, progress, stop)
    return _checked(part, request, resumed_from=opened.start)


def _lock(url: str, folder: Path) -> FileLock:
    """The lock that keeps a second download of ``url`` off its ``.part`` file (the lock file stays, emptied)."""
    part = part_path(url, folder)
    return FileLock(part.with_name(part.name[: -len(".part")] + ".lock"), f"The download of {url}",
                    "Wait for it to finish (or stop it), then run the command again if needed.")


def discard(part: Path) -> None:
    """Delete a download and its state file (missing ones are fine)."""
    for path in (part, _state_path(part)):
        path.unlink(missing_ok=True)


def part_path(url: str, folder: Path) -> Path:
    """``folder/<file name from the URL>-<12 hex of the URL's sha256>.part`` (one per URL, so resumes find it)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "model.zip"
    tag = hashlib.sha256(url.encode()).hexdigest()[:12]
    return folder / f"{name}-{tag}.part"


# ----- checks ------------------------------------------------------------------------------------------------------
def check_sha256(value: str, where: str) -> str:
    """``value`` in lower case if it is 64 hexadecimal digits; else an error naming ``where``."""
    text = str(value).strip().lower()
    if not _SHA256.match(text):
        raise AutoSegNetError(
            f"{where} {value!r} is not a sha256: give the 64 hexadecimal digits that `sha256sum model.zip` "
            "(Windows: `certutil -hashfile model.zip SHA256`) prints."
        )
    return text


def _check_announced_size(request: DownloadRequest, total: int | None) -> None:
    if total is None:
        return
    if request.size is not None and total != request.size:
        raise AutoSegNetError(
            f"{request.url} is {total} bytes according to the server, but {request.size} bytes are expected: it is "
            "not the expected file (the index is out of date or the link was replaced); nothing was installed."
        )
    if total > request.max_size:
        raise AutoSegNetError(
            f"{request.url} is {format_size(total)}, more than --max-size {format_size(request.max_size)}; nothing "
            f"was downloaded. If you trust it, use a larger --max-size (e.g. --max-size {format_size(total * 2)})."
        )


def _checked(part: Path, request: DownloadRequest, resumed_from: int) -> Download:
    """The finished download after comparing its size and sha256 with what was expected (deleted if they differ)."""
    size = part.stat().st_size
    if request.size is not None and size != request.size:
        discard(part)
        raise AutoSegNetError(
            f"{request.url}: received {size} bytes, {request.size} expected; the download was deleted and nothing "
            "was installed. Run the command again."
        )
    digest = sha256_of(part)
    if request.sha256 is not None and digest != request.sha256:
        discard(part)
        raise AutoSegNetError(
            f"{request.url}: the sha256 of the download is {digest}, but {request.sha256} is expected: the file is "
            "damaged or not the published one. It was deleted and nothing was installed; run the command again, "
            "and if this persists, tell whoever published the link."
        )
    if request.sha256 is None:
        log.warning("No --sha256 given: %s (%s) is installed without checking that it is the published file; its "
                    "sha256 is %s.", request.url, format_size(size), digest)
    return Download(part, size, digest, resumed_from)


# ----- resuming -----------------------------------------------------------------------------------------------------
def _state_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _resume_point(part: Path, url: str) -> tuple[int, str | None]:
    """``(bytes to keep, validator)`` of an earlier partial download of ``url`` (``(0, None)`` if there is none)."""
    if not part.is_file():
        return 0, None
    try:
        state = read_json(_state_path(part))
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("url") != url:
        discard(part)
        return 0, None
    return part.stat().st_size, state.get("validator")


def _receive(opened: Opened, part: Path, request: DownloadRequest, progress: ProgressCallback | None,
             stop: StopRequest | None) -> None:
    """Append the stream to ``part`` (truncated first when the stream starts at byte 0), block by block."""
    limit = min(request.max_size, request.size if request.size is not None else request.max_size)
    with open(part, "ab" if opened.start else "wb") as out:
        done = _copy_blocks(opened, out, part, request.url, limit, progress, stop)
    if done > limit:
        discard(part)
        raise AutoSegNetError(
            f"{request.url} sends more than {format_size(limit)} (the expected size or --max-size); the download was "
            "deleted and nothing was installed."
        )
    if opened.total is not None and done < opened.total:
        raise _broke_off(request.url, done, opened.total, "the connection was closed early", part)


def _copy_blocks(opened: Opened, out: BinaryIO, part: Path, url: str, limit: int,
                 progress: ProgressCallback | None, stop: StopRequest | None) -> int:
    """Copy blocks until the stream ends or passes ``limit`` bytes; returns the bytes in ``part`` then."""
    done = opened.start
    while done <= limit:
        if stop is not None:
            stop.raise_if_requested(f"the partial download is kept in {part}; run the same command to resume")
        block = _read_block(opened.stream, part, url, done, opened.total)
        if not block:
            break
        out.write(block)
        done += len(block)
        if progress is not None:
            progress(done, opened.total)
    return done


def _read_block(stream: BinaryIO, part: Path, url: str, done: int, total: int | None) -> bytes:
    try:
        return stream.read(_CHUNK)
    except (http.client.HTTPException, OSError) as error:
        raise _broke_off(url, done, total, str(error) or type(error).__name__, part) from None


def _broke_off(url: str, done: int, total: int | None, reason: str, part: Path) -> AutoSegNetError:
    of = f" of {format_size(total)}" if total else ""
    return AutoSegNetError(
        f"The download of {url} broke off after {format_size(done)}{of} ({reason}). Run the same command again to "
        f"resume it (the part is kept as {part.name} in the download folder), or {INSTALL_HINT}."
    )


