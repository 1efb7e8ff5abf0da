"""Request bodies streamed to disk with a size limit and a checksum; training cases from a tar archive.

Nothing is written in place until the whole body has arrived and its SHA-256 matched: the routes receive a body
into a temporary file (:func:`~AutoSegNetLib.utils.atomic.atomic_path`, or a temporary folder for a case archive)
that is renamed onto its target, or unpacked and renamed member by member, and removed in any case. A refused
upload leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.server.namespace import NotAllowedError

CHECKSUM_HEADER = "X-Content-SHA256"


class TooLargeError(AutoSegNetError):
    """A body over the server's limit (HTTP 413)."""


class ChecksumMismatchError(AutoSegNetError):
    """A body whose SHA-256 is not the one the client announced (HTTP 400)."""


async def receive(chunks: AsyncIterator[bytes], temporary: Path, max_bytes: int, sha256: str | None) -> int:
    """Write ``chunks`` to ``temporary`` (the caller removes it on failure); returns the number of bytes.

    Raises :class:`TooLargeError` once more than ``max_bytes`` arrived, :class:`ChecksumMismatchError` when ``sha256``
    (hex) is given and differs.
    """
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise NotAllowedError(f"{CHECKSUM_HEADER} must be the body's SHA-256 as 64 hexadecimal digits.")
    digest, size = hashlib.sha256(), 0
    with open(temporary, "wb") as stream:
        async for chunk in chunks:
            size += len(chunk)
            if size > max_bytes:
                raise TooLargeError(f"The upload is larger than the server's limit of {max_bytes} bytes "
                                    "(start the server with a larger --max-upload-mb).")
            digest.update(chunk)
            stream.write(chunk)
    if sha256 is not None and digest.hexdigest() != sha256.lower():
        raise ChecksumMismatchError(f"The upload arrived with SHA-256 {digest.hexdigest()}, not {sha256}: it was "
                                    "damaged on the way; send it again.")
    return size


def case_members(case: str) -> re.Pattern:
    """The file names a case archive may hold: ``imagesTr/<case>_XXXX<ending>`` and ``labelsTr/<case><ending>``."""
    name = re.escape(case)
    return re.compile(rf"^(imagesTr/{name}_\d{{4}}|labelsTr/{name})\.[A-Za-z0-9]{{1,8}}(\.gz)?$")


def unpack_case(archive: Path, dataset_folder: Path, case: str) -> list[str]:
    """Unpack a case's tar archive into the raw dataset; returns the member names written.

    Every member must be a regular file named as :func:`case_members` says, with one label file and at least one
    image: otherwise nothing is written. Files of the case that the archive does not hold (e.g. a channel that
    went away) are removed.
    """
    allowed = case_members(case)
    with tarfile.open(archive, "r:") as tar:
        members = tar.getmembers()
        bad = [m.name for m in members if not m.isreg() or not allowed.match(m.name)]
        if bad:
            raise NotAllowedError(f"Case {case}: the archive may only hold imagesTr/{case}_XXXX.<ending> and "
                             f"labelsTr/{case}.<ending> files; found {', '.join(bad[:3])}.")
        names = [m.name for m in members]
        if len(set(names)) != len(names) or sum(n.startswith("labelsTr/") for n in names) != 1 or \
                not any(n.startswith("imagesTr/") for n in names):
            raise NotAllowedError(f"Case {case}: the archive must hold one label file and at least one image, "
                                  "once each.")
        staging = dataset_folder / f".case-{secrets.token_hex(6)}"
        try:
            for member in members:
                source = tar.extractfile(member)
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            _replace_case(staging, dataset_folder, case, names)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return names


def _replace_case(staging: Path, dataset_folder: Path, case: str, names: list[str]) -> None:
    for sub in ("imagesTr", "labelsTr"):
        (dataset_folder / sub).mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(staging / name, dataset_folder / name)
    remove_case(dataset_folder, case, keep=set(names))


def remove_case(dataset_folder: Path, case: str, keep: set[str] = frozenset()) -> list[str]:
    """Remove the case's files from ``imagesTr``/``labelsTr`` (except ``keep``); returns what was removed."""
    allowed, removed = case_members(case), []
    for sub in ("imagesTr", "labelsTr"):
        for path in sorted((dataset_folder / sub).glob(f"{case}*")):
            name = f"{sub}/{path.name}"
            if allowed.match(name) and name not in keep:
                path.unlink()
                removed.append(name)
    return removed
