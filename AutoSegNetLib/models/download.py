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
import io
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from AutoSegNetLib import __version__
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.install_any import Installed, InstallOptions, install_zip
from AutoSegNetLib.models.manifest import sha256_of
from AutoSegNetLib.models.sizes import DEFAULT_MAX_SIZE, format_size
from AutoSegNetLib.utils.atomic import read_json, write_json
from AutoSegNetLib.utils.locks import FileLock
from AutoSegNetLib.utils.stop import StopRequest
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)

#: The download folder's name inside the workspace's results folder (hidden: not a dataset).
DOWNLOAD_FOLDER = ".downloads"
SCHEMES = ("https", "http", "file")
DEFAULT_TIMEOUT_S = 30.0
_CHUNK = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
INSTALL_HINT = "download the zip elsewhere and run `autosegnet install-model <zip>`"

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


@dataclass(frozen=True)
class _Opened:
    """An open source: ``stream`` yields the bytes from offset ``start`` on, of ``total`` (None: unknown)."""

    stream: BinaryIO
    start: int
    total: int | None
    validator: str | None


class _Restart(Exception):  # noqa: N818 - control flow: the partial file cannot be continued
    """The server cannot continue the partial file; start again from byte 0."""


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
                                stop)  # fmt: skip
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
        opened = _open(request, offset, validator)
    except _Restart:
        discard(part)
        opened = _open(request, 0, None)
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
def check_url(url: str) -> str:
    """``url`` if its scheme is https, http or file (with a host for http(s)); else an error."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme.lower() not in SCHEMES or (parts.scheme.lower() != "file" and not parts.netloc):
        raise AutoSegNetError(
            f"{url!r} is not a download URL; give an https://, http:// or file:// URL (for a zip on this computer "
            "run `autosegnet install-model <zip>`)."
        )
    return url


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
                    "sha256 is %s.", request.url, format_size(size), digest)  # fmt: skip
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


def _receive(opened: _Opened, part: Path, request: DownloadRequest, progress: ProgressCallback | None,
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


def _copy_blocks(opened: _Opened, out: BinaryIO, part: Path, url: str, limit: int,
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


# ----- opening sources ----------------------------------------------------------------------------------------------
def _open(request: DownloadRequest, offset: int, validator: str | None) -> _Opened:
    if urllib.parse.urlsplit(request.url).scheme.lower() == "file":
        return _open_file(request.url, offset, validator)
    return _open_http(request, offset, validator)


def local_path(url: str) -> Path:
    """The path of a ``file://`` URL on this computer."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise AutoSegNetError(f"{url}: file:// URLs must name a file on this computer (file:///path/to/model.zip).")
    return Path(urllib.request.url2pathname(parts.path))


def _open_file(url: str, offset: int, validator: str | None) -> _Opened:
    path = local_path(url)
    if not path.is_file():
        raise AutoSegNetError(f"{path} (from {url}) does not exist or is not a file.")
    stat = path.stat()
    current = f"{stat.st_size}-{stat.st_mtime_ns}"
    if offset and (validator != current or offset > stat.st_size):
        raise _Restart()
    stream = open(path, "rb")  # noqa: SIM115 - closed by download()
    stream.seek(offset)
    return _Opened(stream, offset, stat.st_size, current)


def _open_http(request: DownloadRequest, offset: int, validator: str | None) -> _Opened:
    headers = {"User-Agent": f"AutoSegNet/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(request.url, headers=headers),
                                          timeout=request.timeout_s)  # fmt: skip
    except urllib.error.HTTPError as error:
        return _from_http_error(error, request.url, offset, validator)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise unreachable(request.url, getattr(error, "reason", error), INSTALL_HINT) from None
    return _from_response(response, offset)


def _from_response(response: http.client.HTTPResponse, offset: int) -> _Opened:
    validator = _validator(response.headers)
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            response.close()
            raise _Restart()
        return _Opened(response, start, total, validator)
    length = response.headers.get("Content-Length")
    return _Opened(response, 0, int(length) if length and length.isdigit() else None, validator)


def _from_http_error(error: urllib.error.HTTPError, url: str, offset: int, validator: str | None) -> _Opened:
    """A complete earlier download (416 with the same total), a restart, or an error naming the status."""
    with error:
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return _Opened(io.BytesIO(), offset, total, validator)
            raise _Restart()
        raise AutoSegNetError(
            f"{url}: the server answered {error.code} {error.reason}. Check the URL (and that the file is public); "
            f"or {INSTALL_HINT}."
        ) from None


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total)`` of ``bytes a-b/total`` or ``bytes */total``."""
    match = _CONTENT_RANGE.match((header or "").strip())
    if not match:
        raise _Restart()
    total = match.group(3)
    return (int(match.group(1)) if match.group(1) else None), (int(total) if total.isdigit() else None)


def _validator(headers) -> str | None:
    """A strong ETag, else Last-Modified: what ``If-Range`` may send back."""
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("Last-Modified")


def unreachable(url: str, reason: object, hint: str) -> AutoSegNetError:
    """The offline error: which host could not be reached, why, and ``hint`` (how to do without it)."""
    host = urllib.parse.urlsplit(url).netloc or url
    return AutoSegNetError(f"cannot reach {host}: {reason}; {hint}.")


def read_url(url: str, max_bytes: int, hint: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The whole content of a small resource (a model index) at ``url`` (https, http or file://), at most
    ``max_bytes``; ``hint`` says how to do without the network when the host cannot be reached."""
    check_url(url)
    if urllib.parse.urlsplit(url).scheme.lower() == "file":
        path = local_path(url)
        if not path.is_file():
            raise AutoSegNetError(f"{path} (from {url}) does not exist or is not a file.")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    else:
        request = urllib.request.Request(url, headers={"User-Agent": f"AutoSegNet/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                data = response.read(max_bytes + 1)
        except urllib.error.HTTPError as error:
            raise AutoSegNetError(f"{url}: the server answered {error.code} {error.reason}; check the URL.") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            raise unreachable(url, getattr(error, "reason", error), hint) from None
    if len(data) > max_bytes:
        raise AutoSegNetError(f"{url} is larger than {format_size(max_bytes)}; it is not a model index.")
    return data
