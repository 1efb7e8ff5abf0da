"""Where jobs run: this computer (:class:`LocalEngine`) or an AutoSegNet server (:class:`RemoteEngine`).

The workflow builds the same steps for both -- engine command lines as :mod:`AutoSegNetSceneLib.commands` writes
them, with paths in the local workspace -- and asks its engine to start them. A remote engine sends each
command to the server with the workspace paths made relative (the server has the same layout per client), and
adds the transfers a server needs: the exported dataset up before planning, prediction inputs up and outputs
down around a prediction. The job objects both return have one interface (``poll``, ``stop``, ``state`` ...).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from AutoSegNetLib.jobs import process as proc
from AutoSegNetLib.jobs.engine_job import EngineJob, find_jobs
from AutoSegNetLib.jobs.thread_job import ThreadJob
from AutoSegNetLib.remote.connection import Connection
from AutoSegNetLib.remote.dataset_sync import sync_dataset
from AutoSegNetLib.remote.remote_job import REMOTE_FILE, RemoteJob
from AutoSegNetSceneLib import models
from AutoSegNetSceneLib.job_chain import JobStep

log = logging.getLogger(__name__)
COMMON_VALUE_OPTIONS = ("--workspace", "--progress")


class LocalEngine:
    """Jobs as processes on this computer."""

    remote = False
    description = "this computer"

    def start(self, args: Sequence[str], jobs_root: Path, kind: str, label: str = "", python: str | None = None,
              status_file: Path | None = None, meta: dict | None = None):
        return EngineJob.start(args, jobs_root, kind, label, python, status_file, meta=meta)

    def find_jobs(self, jobs_root: Path) -> list:
        return find_jobs(jobs_root, running_only=False)

    def models(self, workspace_root: Path) -> list[models.ModelInfo]:
        return models.find_models(Path(workspace_root))

    def upload_dataset_steps(self, dataset) -> list[JobStep]:
        return []

    def prediction_steps(self, workspace_root: Path, folders, predict_args: Sequence[str], meta: dict) -> list:
        return [JobStep("predict", predict_args)]


class RemoteEngine:
    """Jobs on an ``autosegnet serve`` server; the local workspace keeps job records, exports and downloads."""

    remote = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description = connection.url

    def start(self, args: Sequence[str], jobs_root: Path, kind: str, label: str = "", python: str | None = None,
              status_file: Path | None = None, meta: dict | None = None) -> RemoteJob:
        workspace_root = Path(jobs_root).parent
        command, *rest = map(str, args)
        folder = proc.new_job_folder(Path(jobs_root), kind)
        return RemoteJob.submit(self.connection, command, server_arguments(rest, workspace_root), folder, kind,
                                label, meta)

    def find_jobs(self, jobs_root: Path) -> list:
        found = []
        for record in sorted(Path(jobs_root).glob(f"*/{REMOTE_FILE}"), reverse=True):
            try:
                found.append(RemoteJob.reattach(self.connection, record.parent))
            except (OSError, ValueError) as exc:
                log.warning("Cannot re-attach remote job %s: %s", record.parent, exc)
        return found

    def models(self, workspace_root: Path) -> list[models.ModelInfo]:
        """The server's models, their metadata mirrored under the local workspace (no checkpoints)."""
        found = []
        for entry in self.connection.json("GET", "/v1/models"):
            for item in entry["metadata"]:
                target = Path(workspace_root) / item["path"]
                if not target.is_file() or target.stat().st_size != item["bytes"]:
                    self.connection.download(item["path"], target)
            model = models.read_model(Path(workspace_root) / entry["path"], folds=entry["folds"])
            if model is not None:
                found.append(model)
        return found

    def upload_dataset_steps(self, dataset) -> list[JobStep]:
        def upload(report, cancelled):
            return sync_dataset(self.connection, dataset.raw_folder, report, cancelled)

        return [JobStep("upload", start=lambda: ThreadJob(upload, "upload", "upload"))]

    def prediction_steps(self, workspace_root: Path, folders, predict_args: Sequence[str], meta: dict) -> list:
        root = Path(workspace_root)

        def upload(report, cancelled):
            files = sorted(folders.input.glob("*"))
            for index, path in enumerate(files):
                self.connection.upload("PUT", f"/v1/files/{path.relative_to(root).as_posix()}", path)
                report(index + 1, len(files), path.name)

        def download(report, cancelled):
            remote = folders.output.relative_to(root).as_posix()
            files = self.connection.json("GET", f"/v1/files/{remote}")["files"]
            for index, item in enumerate(files):
                self.connection.download(item["path"], root / item["path"])
                report(index + 1, len(files), Path(item["path"]).name)

        return [JobStep("upload", start=lambda: ThreadJob(upload, "segment", "upload", meta)),
                JobStep("predict", predict_args),
                JobStep("download", start=lambda: ThreadJob(download, "segment", "download", meta))]


def server_arguments(args: Sequence[str], workspace_root: Path) -> list[str]:
    """An engine command line for the server: without ``--workspace``/``--progress`` (the server sets them) and
    with paths inside ``workspace_root`` made relative to it. A path outside the workspace cannot be sent."""
    root = Path(workspace_root).resolve()
    result, skip = [], False
    for token in args:
        if skip:
            skip = False
        elif token in COMMON_VALUE_OPTIONS:
            skip = True
        elif token.startswith("/") or token.startswith(str(root)):
            path = Path(token).resolve()
            if not path.is_relative_to(root):
                raise ValueError(f"{token} is outside the workspace {root}; a server cannot read it. Put it into "
                                 "the workspace first.")
            result.append(path.relative_to(root).as_posix())
        else:
            result.append(token)
    return result
