"""Opening a download source -- https, http or a file:// URL -- from a byte offset, and reading small resources.

:func:`open_source` continues at a byte offset when the source allows it (an HTTP ``Range`` request with
``If-Range``, or a seek in a local file) and raises :class:`Restart` when the partial download cannot be continued.
A host that cannot be reached gives :func:`unreachable`'s error, which says how to do without the network.
"""

from __future__ import annotations

import http.client
import io
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from AutoSegNetLib import __version__
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.models.sizes import format_size

SCHEMES = ("https", "http", "file")
DEFAULT_TIMEOUT_S = 30.0
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
INSTALL_HINT = "download the zip elsewhere and run `autosegnet install-model <zip>`"


@dataclass(frozen=True)
class Opened:
    """An open source: ``stream`` yields the bytes from offset ``start`` on, of ``total`` (None: unknown)."""

    stream: BinaryIO
    start: int
    total: int | None
    validator: str | None


class Restart(Exception):  # noqa: N818 - control flow: the partial file cannot be continued
    """The server cannot continue the partial file; start again from byte 0."""


def check_url(url: str) -> str:
    """``url`` if its scheme is https, http or file (with a host for http(s)); else an error."""
    parts = urllib.parse.urlsplit(str(url))
    if parts.scheme.lower() not in SCHEMES or (parts.scheme.lower() != "file" and not parts.netloc):
        raise AutoSegNetError(
            f"{url!r} is not a download URL; give an https://, http:// or file:// URL (for a zip on this computer "
            "run `autosegnet install-model <zip>`)."
        )
    return url


def open_source(url: str, offset: int, validator: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Opened:
    """``url`` opened at byte ``offset``; ``validator``: the one recorded when the partial download began;
    ``timeout_s`` per network operation."""
    if urllib.parse.urlsplit(url).scheme.lower() == "file":
        return _open_file(url, offset, validator)
    return _open_http(url, offset, validator, timeout_s)


def local_path(url: str) -> Path:
    """The path of a ``file://`` URL on this computer."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise AutoSegNetError(f"{url}: file:// URLs must name a file on this computer (file:///path/to/model.zip).")
    return Path(urllib.request.url2pathname(parts.path))


def _open_file(url: str, offset: int, validator: str | None) -> Opened:
    path = local_path(url)
    if not path.is_file():
        raise AutoSegNetError(f"{path} (from {url}) does not exist or is not a file.")
    stat = path.stat()
    current = f"{stat.st_size}-{stat.st_mtime_ns}"
    if offset and (validator != current or offset > stat.st_size):
        raise Restart()
    stream = open(path, "rb")  # noqa: SIM115 - closed by the download
    stream.seek(offset)
    return Opened(stream, offset, stat.st_size, current)


def _open_http(url: str, offset: int, validator: str | None, timeout_s: float) -> Opened:
    headers = {"User-Agent": f"AutoSegNet/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if validator:
            headers["If-Range"] = validator
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as error:
        return _from_http_error(error, url, offset, validator)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise unreachable(url, getattr(error, "reason", error), INSTALL_HINT) from None
    return _from_response(response, offset)


def _from_response(response: http.client.HTTPResponse, offset: int) -> Opened:
    validator = _validator(response.headers)
    if response.status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start != offset:
            response.close()
            raise Restart()
        return Opened(response, start, total, validator)
    length = response.headers.get("Content-Length")
    return Opened(response, 0, int(length) if length and length.isdigit() else None, validator)


def _from_http_error(error: urllib.error.HTTPError, url: str, offset: int, validator: str | None) -> Opened:
    """A complete earlier download (416 with the same total), a restart, or an error naming the status."""
    with error:
        if error.code == 416 and offset:
            _, total = _content_range(error.headers.get("Content-Range"))
            if total == offset:
                return Opened(io.BytesIO(), offset, total, validator)
            raise Restart()
        raise AutoSegNetError(
            f"{url}: the server answered {error.code} {error.reason}. Check the URL (and that the file is public); "
            f"or {INSTALL_HINT}."
        ) from None


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """``(first byte, total)`` of ``bytes a-b/total`` or ``bytes */total``."""
    match = _CONTENT_RANGE.match((header or "").strip())
    if not match:
        raise Restart()
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
