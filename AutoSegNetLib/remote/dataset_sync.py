"""Upload a raw dataset to the server, incrementally: only the cases whose content hash changed.

The local raw dataset (written by the module's export) records each case's content hash in ``dataset.json``
(``autosegnet.case_hashes``); the server's copy holds the hashes of what it has. A case is sent when its hash
differs or the server lacks it, as one uncompressed tar of its files (one request per case, with the body's
SHA-256); cases the server has but the local dataset no longer lists are deleted there; ``dataset.json`` goes
last, so that the server's dataset never lists a case whose files are missing.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from AutoSegNetLib.dataset.import_staged import case_files, recorded_hashes
from AutoSegNetLib.dataset.listing import label_file_name
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.remote.connection import Connection, RemoteError


@dataclass
class SyncReport:
    """What an upload did: cases sent, unchanged, removed on the server; bytes sent and the cases' file sizes."""

    dataset: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    bytes_of_files: int = 0

    def summary(self) -> str:
        return (f"Uploaded {self.dataset}: {len(self.uploaded)} case(s) sent, {len(self.unchanged)} unchanged, "
                f"{len(self.removed)} removed ({self.bytes_sent / 2**20:.1f} MiB).")


def sync_dataset(connection: Connection, folder: Path, progress: Callable[[int, int, str], None] | None = None,
                 cancelled: Callable[[], bool] = lambda: False) -> SyncReport:
    """Make the server's ``raw/<folder.name>`` equal to the local raw dataset ``folder``; blocking (use a thread).

    ``progress(done, total, case)`` after each case; ``cancelled()`` is asked between cases.
    """
    folder = Path(folder)
    local = _read_dataset_json(folder)
    hashes = recorded_hashes(local)
    if not hashes:
        raise AutoSegNetError(f"{folder}/dataset.json records no case hashes; export the training set first.")
    remote = _remote_hashes(connection, folder.name)
    report = SyncReport(folder.name)
    changed = [case for case, digest in sorted(hashes.items()) if remote.get(case) != digest]
    report.unchanged = sorted(set(hashes) - set(changed))
    for index, case in enumerate(changed):
        if cancelled():
            raise AutoSegNetError("Upload stopped on request; the server's dataset keeps its earlier dataset.json.")
        report.bytes_sent += _upload_case(connection, folder, case, local, report)
        report.uploaded.append(case)
        if progress is not None:
            progress(index + 1, len(changed), case)
    for case in sorted(set(remote) - set(hashes)):
        connection.json("DELETE", f"/v1/datasets/{folder.name}/cases/{case}")
        report.removed.append(case)
    connection.json("PUT", f"/v1/datasets/{folder.name}/dataset.json", local)
    return report


def _upload_case(connection: Connection, folder: Path, case: str, local: dict, report: SyncReport) -> int:
    files = case_files(folder, case, len(local.get("channel_names") or {}), local.get("file_ending", ""))
    missing = [p.relative_to(folder).as_posix() for p in files if not p.is_file()]
    if missing:
        raise AutoSegNetError(f"Case {case} is listed in {folder}/dataset.json but {', '.join(missing)} is missing; "
                              "export again.")
    with tempfile.TemporaryDirectory(prefix="autosegnet-upload-") as temporary:
        archive = Path(temporary) / f"{case}.tar"
        with tarfile.open(archive, "w:") as tar:
            for path in files:
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        report.bytes_of_files += sum(p.stat().st_size for p in files)
        connection.upload("PUT", f"/v1/datasets/{folder.name}/cases/{case}", archive)
        return archive.stat().st_size


def _remote_hashes(connection: Connection, dataset: str) -> dict[str, str]:
    try:
        answer = connection.json("GET", f"/v1/datasets/{dataset}")
    except RemoteError as exc:
        if exc.status == 404:
            return {}
        raise
    on_server = answer.get("dataset_json") or {}
    present, ending = set(answer.get("labels", [])), on_server.get("file_ending", "")
    return {case: digest for case, digest in recorded_hashes(on_server).items()
            if label_file_name(case, ending) in present}


def _read_dataset_json(folder: Path) -> dict:
    try:
        return json.loads((folder / DATASET_JSON_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise AutoSegNetError(f"Cannot read {folder}/dataset.json ({exc}); export the training set first.") from exc
