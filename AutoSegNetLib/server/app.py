"""The FastAPI application of ``autosegnet serve``: routes under ``/v1``, JSON errors, the queue's ticker.

Every ``/v1`` route needs ``Authorization: Bearer <token>`` when the server has tokens (``/docs`` and
``/openapi.json`` describe the API and hold no data). A token's client sees only its own namespace.

No ``from __future__ import annotations`` here: FastAPI reads the route annotations (``Client``, a local
``Annotated`` alias) at run time.
"""

import contextlib
import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import DATASET_JSON_FILE
from AutoSegNetLib.server import uploads
from AutoSegNetLib.server.config import LOCAL_CLIENT, ServerConfig
from AutoSegNetLib.server.events import event_stream
from AutoSegNetLib.server.info import devices, gpu_has_room, server_info
from AutoSegNetLib.server.job_queue import JobQueue, ServerJob
from AutoSegNetLib.server.model_listing import list_models
from AutoSegNetLib.server.namespace import (
    Namespace,
    NotAllowedError,
    check_case,
    check_dataset,
    client_for_token,
    namespace_for,
)
from AutoSegNetLib.utils.atomic import atomic_path, write_json

log = logging.getLogger(__name__)
MAX_JSON_BYTES = 16 * 2**20


class JobRequest(BaseModel):
    """``autosegnet <command> <args>``; paths in ``args`` are relative to your workspace."""

    command: str
    args: list[str] = Field(default_factory=list)
    kind: str = Field(default="", pattern=r"^[a-z0-9-]{0,32}$")
    label: str = Field(default="", max_length=200)
    meta: dict[str, Any] = Field(default_factory=dict)


def create_app(config: ServerConfig) -> FastAPI:
    queue = JobQueue(config.python, gpu_room=lambda: gpu_has_room(config.min_free_gpu_mb))
    app = FastAPI(title="AutoSegNet engine server", version="1", lifespan=_lifespan(config, queue))
    app.state.config, app.state.queue = config, queue
    _add_error_handlers(app)

    def client(authorization: Annotated[str | None, Header()] = None) -> Namespace:
        if not config.authenticated:
            return namespace_for(config.workspace, LOCAL_CLIENT)
        name = client_for_token(authorization, config.tokens)
        if name is None:
            raise HTTPException(401, "Missing or wrong token: send 'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})
        return namespace_for(config.workspace, name)

    Client = Annotated[Namespace, Depends(client)]

    @app.get("/v1/info")
    def info(ns: Client) -> dict:
        """Engine version, devices with free memory, the queue."""
        with queue.lock:
            counts = queue.counts()
        return {**server_info(counts), "client": ns.name}

    _add_dataset_routes(app, Client, config)
    _add_dataset_upload_routes(app, Client, config)
    _add_file_routes(app, Client, config)
    _add_job_routes(app, Client, queue)
    _add_job_output_routes(app, Client, queue)

    @app.get("/v1/models")
    def models(ns: Client) -> list[dict]:
        """Trained models and versions of your workspace, with their small metadata files."""
        return list_models(ns.root)

    return app


def _lifespan(config: ServerConfig, queue: JobQueue):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        clients = sorted(p.name for p in (config.workspace / "clients").glob("*") if p.is_dir())
        with queue.lock:
            found = queue.reattach([namespace_for(config.workspace, name) for name in clients])
        log.info("Re-attached %d job(s).", found)
        threading.Thread(target=devices, daemon=True).start()  # imports torch now, not on the first job
        stop = threading.Event()
        ticker = threading.Thread(target=_tick_until, args=(queue, stop, config.poll_interval_s), daemon=True)
        ticker.start()
        yield
        stop.set()
        ticker.join(timeout=5)

    return lifespan


def _tick_until(queue: JobQueue, stop: threading.Event, interval_s: float) -> None:
    while not stop.wait(interval_s):
        with queue.lock:
            try:
                queue.tick()
            except Exception:
                log.exception("Job queue tick failed")


async def _receive(request: Request, temporary: Path, limit: int) -> int:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise uploads.TooLargeError(f"The upload ({declared} bytes) is larger than the server's limit of {limit} bytes "
                               "(start the server with a larger --max-upload-mb).")
    checksum = request.headers.get(uploads.CHECKSUM_HEADER)
    if checksum is None:
        raise NotAllowedError(f"Send the body's SHA-256 in the {uploads.CHECKSUM_HEADER} header.")
    return await uploads.receive(request.stream(), temporary, limit, checksum)


def _add_dataset_routes(app: FastAPI, Client, config: ServerConfig) -> None:
    @app.get("/v1/datasets")
    def datasets(ns: Client) -> list[str]:
        """Raw datasets in your workspace."""
        return sorted(p.name for p in ns.workspace.raw.glob("Dataset*") if p.is_dir())

    @app.get("/v1/datasets/{dataset}")
    def dataset(dataset: str, ns: Client) -> dict:
        """The dataset's ``dataset.json`` (with ``autosegnet.case_hashes``, for incremental uploads) and cases."""
        folder = ns.workspace.raw / check_dataset(dataset)
        if not folder.is_dir():
            raise HTTPException(404, f"No dataset {dataset} on the server yet.")
        path = folder / DATASET_JSON_FILE
        labels = sorted(p.name for p in (folder / "labelsTr").glob("*") if not p.name.startswith("."))
        return {"dataset_json": json.loads(path.read_text()) if path.is_file() else None, "labels": labels}



def _add_dataset_upload_routes(app: FastAPI, Client, config: ServerConfig) -> None:
    @app.put("/v1/datasets/{dataset}/cases/{case}")
    async def put_case(dataset: str, case: str, request: Request, ns: Client) -> dict:
        """One training case as an uncompressed tar of ``imagesTr/<case>_XXXX<ending>`` and
        ``labelsTr/<case><ending>``; header ``X-Content-SHA256``. Replaces the case's files."""
        folder = ns.workspace.raw / check_dataset(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=folder) as staging:  # removed whatever happens
            archive = Path(staging) / f"{check_case(case)}.tar"
            size = await _receive(request, archive, config.max_upload_bytes)
            written = uploads.unpack_case(archive, folder, case)
        return {"case": case, "files": written, "bytes": size}

    @app.delete("/v1/datasets/{dataset}/cases/{case}")
    def delete_case(dataset: str, case: str, ns: Client) -> dict:
        folder = ns.workspace.raw / check_dataset(dataset)
        return {"removed": uploads.remove_case(folder, check_case(case)) if folder.is_dir() else []}

    @app.put("/v1/datasets/{dataset}/dataset.json")
    async def put_dataset_json(dataset: str, request: Request, ns: Client) -> dict:
        """The dataset's ``dataset.json`` (written after its cases)."""
        folder = ns.workspace.raw / check_dataset(dataset)
        folder.mkdir(parents=True, exist_ok=True)
        body = await request.body()
        if len(body) > MAX_JSON_BYTES:
            raise uploads.TooLargeError(f"dataset.json is larger than {MAX_JSON_BYTES} bytes.")
        try:
            content = json.loads(body)
        except ValueError as exc:
            raise NotAllowedError(f"dataset.json is not valid JSON: {exc}") from exc
        if not isinstance(content, dict) or not {"labels", "channel_names"} <= content.keys():
            raise NotAllowedError("dataset.json must be an object with 'channel_names' and 'labels'.")
        write_json(folder / DATASET_JSON_FILE, content)
        return {"written": f"raw/{dataset}/{DATASET_JSON_FILE}"}


def _add_file_routes(app: FastAPI, Client, config: ServerConfig) -> None:
    @app.put("/v1/files/{path:path}")
    async def put_file(path: str, request: Request, ns: Client) -> dict:
        """A file under ``jobs/`` (e.g. the images to predict); header ``X-Content-SHA256``."""
        target = ns.resolve(path, writable=True)
        with atomic_path(target) as temporary:  # renamed onto the target only once the whole body checked out
            size = await _receive(request, temporary, config.max_upload_bytes)
        return {"path": ns.relative(target), "bytes": size}

    @app.get("/v1/files/{path:path}", response_model=None)
    def get_file(path: str, ns: Client) -> FileResponse | dict:
        """A file of your workspace (predictions, logs, model zips), or a folder's listing."""
        target = ns.resolve(path)
        if target.is_dir():
            files = [p for p in sorted(target.rglob("*")) if p.is_file() and not p.name.startswith(".")]
            return {"files": [{"path": ns.relative(p), "bytes": p.stat().st_size} for p in files]}
        if not target.is_file():
            raise HTTPException(404, f"{path} does not exist in your workspace.")
        return FileResponse(target, filename=target.name)


def _find(queue: JobQueue, ns: Namespace, job_id: str) -> ServerJob:
    try:
        return queue.get(ns, job_id)
    except KeyError:
        raise HTTPException(404, f"No job {job_id} in your workspace.") from None


def _add_job_routes(app: FastAPI, Client, queue: JobQueue) -> None:

    @app.post("/v1/jobs", status_code=201)
    def submit(request: JobRequest, ns: Client) -> dict:
        """Queue an engine command (plan-and-preprocess, preprocess, train, predict, verify, export-model,
        install-model, version)."""
        with queue.lock:
            return queue.submit(ns, request.command, request.args, request.kind, request.label,
                                request.meta).describe()

    @app.get("/v1/jobs")
    def jobs(ns: Client) -> list[dict]:
        with queue.lock:
            return [job.describe() for job in queue.of(ns)]

    @app.get("/v1/jobs/{job_id}")
    def job(job_id: str, ns: Client) -> dict:
        with queue.lock:
            return _find(queue, ns, job_id).describe()

    @app.post("/v1/jobs/{job_id}/stop")
    def stop(job_id: str, ns: Client) -> dict:
        """Ask the job to stop cleanly (a training saves checkpoint_latest first); a queued job is cancelled."""
        with queue.lock:
            found = _find(queue, ns, job_id)
            queue.stop(found)
            return found.describe()



def _add_job_output_routes(app: FastAPI, Client, queue: JobQueue) -> None:
    @app.get("/v1/jobs/{job_id}/log", response_class=PlainTextResponse)
    def job_log(job_id: str, ns: Client, lines: int = 200) -> str:
        with queue.lock:
            found = _find(queue, ns, job_id)
        return found.engine.log_tail(max(1, min(lines, 10000))) if found.engine is not None else ""

    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: str, ns: Client, after: int = 0,
               last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        """The job's progress events as server-sent events (``id`` = event number; resume with
        ``Last-Event-ID`` or ``?after=N``); ends with an ``end`` event holding the final status."""
        with queue.lock:
            found = _find(queue, ns, job_id)
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else after

        def finished() -> str | None:
            with queue.lock:
                if found.engine is not None and found.engine.running:
                    found.engine.poll()  # notice the end now rather than at the queue's next tick
                return None if found.status in ("queued", "running") else found.status

        return StreamingResponse(event_stream(found.folder, start, finished), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _add_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return error(422, f"Invalid request: {problems}")

    @app.exception_handler(uploads.TooLargeError)
    async def too_large(request: Request, exc: uploads.TooLargeError) -> JSONResponse:
        return error(413, str(exc))

    @app.exception_handler(AutoSegNetError)
    async def refused(request: Request, exc: AutoSegNetError) -> JSONResponse:
        return error(400, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("Unexpected error on %s %s", request.method, request.url.path)
        return error(500, f"Internal server error ({type(exc).__name__}); the server's log has the details.")
