"""Where jobs run: this computer (:class:`LocalEngine`) or an AutoSegNet server (:class:`RemoteEngine`).

The workflow builds the same steps for both -- engine command lines as :mod:`AutoSegNetSceneLib.commands` writes
them, with paths in the local workspace -- and asks its engine to start them. A remote engine sends each
command to the server with the workspace paths made relative (the server has the same layout per client), and
adds the transfers a server needs: the exported dataset up before planning, prediction inputs up and outputs
down around a prediction. The job objects both return have one interface (``poll``, ``stop``, ``state`` ...).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from AutoSegNetLib.jobs import process as proc
from AutoSegNetLib.jobs.engine_job import EngineJob, find_jobs
from AutoSegNetLib.jobs.thread_job import ThreadJob
from AutoSegNetLib.models import versions
from AutoSegNetLib.remote.connection import Connection
from AutoSegNetLib.remote.dataset_sync import sync_dataset
from AutoSegNetLib.remote.remote_job import REMOTE_FILE, RemoteJob
from AutoSegNetSceneLib.job_chain import JobChain, JobStep

log = logging.getLogger(__name__)
COMMON_VALUE_OPTIONS = ("--workspace", "--progress")


class LocalEngine:
    """Jobs as processes on this computer."""

    remote = False
    description = "this computer"
    models_generation = 0

    def start(self, args: Sequence[str], jobs_root: Path, kind: str, label: str = "", python: str | None = None,
              status_file: Path | None = None, meta: dict | None = None):
        return EngineJob.start(args, jobs_root, kind, label, python, status_file, meta=meta)

    def find_jobs(self, jobs_root: Path) -> list:
        return find_jobs(jobs_root, running_only=False)

    def models(self, workspace_root: Path) -> list[versions.ModelInfo]:
        return versions.find_models(Path(workspace_root))

    def upload_dataset_steps(self, dataset) -> list[JobStep]:
        return []

    def fetch_steps(self, workspace_root: Path, files: Sequence[Path]) -> list[JobStep]:
        return []

    def prediction_steps(self, workspace_root: Path, folders, predict_args: Sequence[str], meta: dict) -> list:
        return [JobStep("predict", predict_args)]

    def install_steps(self, workspace_root: Path, zip_file: Path, install_command) -> list[JobStep]:
        return [JobStep("install", install_command(workspace_root, zip_file))]

    def follow_prediction(self, job, workspace_root: Path, folders):
        """A re-attached prediction job, followed to where its output is on this computer: here, itself."""
        return job


class RemoteEngine:
    """Jobs on an ``autosegnet serve`` server; the local workspace keeps job records, exports and downloads."""

    remote = True

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.description = connection.url
        self.models_generation = 0
        self._models: list[versions.ModelInfo] = []
        self._refreshing: threading.Thread | None = None

    def start(self, args: Sequence[str], jobs_root: Path, kind: str, label: str = "", python: str | None = None,
              status_file: Path | None = None, meta: dict | None = None) -> RemoteJob:
        workspace_root = Path(jobs_root).parent
        command, *rest = map(str, args)
        folder = proc.new_job_folder(Path(jobs_root), kind)
        return RemoteJob.submit(self.connection, command, server_arguments(rest, workspace_root), folder, kind,
                                label, meta)

    def find_jobs(self, jobs_root: Path) -> list:
        """The newest server job of each kind recorded here, followed again (a thread asks the server)."""
        newest: dict[str, Path] = {}
        for record in sorted(Path(jobs_root).glob(f"*/{REMOTE_FILE}"), reverse=True):  # newest folder first
            try:
                kind = json.loads(record.read_text()).get("kind", "")
            except (OSError, ValueError) as exc:
                log.warning("Cannot read remote job %s: %s", record.parent, exc)
                continue
            newest.setdefault(kind, record.parent)
        return [RemoteJob.reattach(self.connection, folder) for folder in newest.values()]

    def models(self, workspace_root: Path) -> list[versions.ModelInfo]:
        """The server's models as last listed; never waits: starts a new listing in the background, and
        :attr:`models_generation` changes when it has arrived."""
        if self._refreshing is None or not self._refreshing.is_alive():
            self._refreshing = threading.Thread(target=self._refresh_quietly, args=(Path(workspace_root),),
                                                daemon=True)
            self._refreshing.start()
        return list(self._models)

    def _refresh_quietly(self, workspace_root: Path) -> None:
        try:
            models = self.refresh_models(workspace_root)
        except Exception as exc:  # the server may be down: keep the last list
            log.warning("Cannot list the server's models: %s", exc)
            return
        if [m.folder for m in models] != [m.folder for m in self._models] or \
                [m.dice for m in models] != [m.dice for m in self._models]:
            self._models = models
            self.models_generation += 1

    def refresh_models(self, workspace_root: Path) -> list[versions.ModelInfo]:
        """The server's models, their metadata mirrored under the local workspace (no checkpoints); blocking."""
        found = []
        for entry in self.connection.json("GET", "/v1/models"):
            for item in entry["metadata"]:
                target = local_path(workspace_root, item["path"])
                if not target.is_file() or target.stat().st_size != item["bytes"]:
                    self.connection.download(item["path"], target)
            model = versions.read_model(local_path(workspace_root, entry["path"]), folds=entry["folds"])
            if model is not None:
                found.append(model)
        return found

    def upload_dataset_steps(self, dataset) -> list[JobStep]:
        def upload(report, cancelled):
            return sync_dataset(self.connection, dataset.raw_folder, report, cancelled)

        return [JobStep("upload", start=lambda: ThreadJob(upload, "upload", "upload"))]

    def fetch_steps(self, workspace_root: Path, files: Sequence[Path]) -> list[JobStep]:
        """Download files the server wrote (e.g. verify's report) to the same place in the local workspace."""
        root = Path(workspace_root)

        def download(report, cancelled):
            for index, path in enumerate(files):
                self.connection.download(Path(path).relative_to(root).as_posix(), Path(path))
                report(index + 1, len(files), Path(path).name)

        return [JobStep("download", start=lambda: ThreadJob(download, "download", "download"))]

    def install_steps(self, workspace_root: Path, zip_file: Path, install_command) -> list[JobStep]:
        """Upload the zip into a job folder on the server, then install it there."""
        folder = proc.new_job_folder(Path(workspace_root) / "jobs", "install-upload")
        target = folder / Path(zip_file).name

        def upload(report, cancelled):
            self.connection.upload("PUT", f"/v1/files/{target.relative_to(workspace_root).as_posix()}", zip_file)
            report(1, 1, target.name)

        return [JobStep("upload", start=lambda: ThreadJob(upload, "install", "upload")),
                JobStep("install", install_command(workspace_root, target))]

    def prediction_steps(self, workspace_root: Path, folders, predict_args: Sequence[str], meta: dict) -> list:
        root = Path(workspace_root)

        def upload(report, cancelled):
            files = sorted(folders.input.glob("*"))
            for index, path in enumerate(files):
                self.connection.upload("PUT", f"/v1/files/{path.relative_to(root).as_posix()}", path)
                report(index + 1, len(files), path.name)

        return [JobStep("upload", start=lambda: ThreadJob(upload, "segment", "upload", meta)),
                JobStep("predict", predict_args), self._download_step(root, folders, meta)]

    def follow_prediction(self, job, workspace_root: Path, folders):
        """A prediction re-attached after a restart, then the download of its output (as the chain that started
        it would have done)."""
        steps = [JobStep("predict", start=lambda: job), self._download_step(Path(workspace_root), folders, job.meta)]
        return JobChain(steps, Path(workspace_root) / "jobs", "segment", meta=job.meta).start()

    def _download_step(self, root: Path, folders, meta: dict) -> JobStep:
        """Download the prediction's output folder into the same place in the local workspace."""

        def download(report, cancelled):
            remote = folders.output.relative_to(root).as_posix()
            files = self.connection.json("GET", f"/v1/files/{remote}")["files"]
            for index, item in enumerate(files):
                self.connection.download(item["path"], local_path(root, item["path"]))
                report(index + 1, len(files), Path(item["path"]).name)

        return JobStep("download", start=lambda: ThreadJob(download, "segment", "download", meta))


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


def local_path(workspace_root: Path, relative: str) -> Path:
    """Where a file the server names (relative to the client's workspace there) goes here; a name that would
    leave the local workspace (``..``, an absolute path) is refused, whatever the server sends."""
    root = Path(workspace_root).resolve()
    path = (root / relative).resolve()
    if Path(relative).is_absolute() or not path.is_relative_to(root):
        raise ValueError(f"The server named {relative!r}, which is outside the workspace {root}; not written.")
    return path
