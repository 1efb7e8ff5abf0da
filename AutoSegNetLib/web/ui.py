"""The page's server side: state, button handlers and the timer that follows the jobs.

Every handler runs on the trame server's event-loop thread and returns at once: long work runs as background
engine jobs that the timer follows with :meth:`WebSession.poll` (which never waits). The state lives on the server,
so a reloaded page shows the same cases and jobs; a restarted server re-attaches to the workspace's running jobs.
The layout is in :mod:`.panel`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from trame.app import get_server

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.web.app import JobView, WebSession
from AutoSegNetLib.web.downloads import ROUTE, downloads_folder
from AutoSegNetLib.web.forms import number
from AutoSegNetLib.web.panel import build_panel

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often the timer follows the jobs
POLL_IN_PROCESS_S = 0.05  # while an export is staged on the server's thread, one short step per call
USER_ERRORS = (AutoSegNetError, RuntimeError, ValueError, OSError)
JOB_KINDS = ("train", "segment", "zip")


def build_server(workspace: Path, server=None):
    """A trame server with the AutoSegNet web UI over ``workspace``; call ``server.start(...)`` on it."""
    server = server or get_server(client_type="vue3")
    session = WebSession(server, workspace)
    server.enable_module({"serve": {ROUTE: str(downloads_folder(workspace))}})
    _initial_state(server.state, workspace)
    _bind_handlers(server, session)
    build_panel(session.app)
    server.controller.on_server_ready.add_task(lambda **_: _follow_jobs(server.state, session))
    return server


def _initial_state(state, workspace: Path) -> None:
    state.trame__title = "AutoSegNet"
    state.update({"asn_path": "", "asn_volume": "", "asn_message": f"Workspace: {workspace}", "asn_cases": [],
                  "asn_epochs": 1, "asn_iterations": "", "asn_device": "auto",
                  "asn_configuration": "auto", "asn_fold": "all", "asn_budget": "", "asn_amp": "auto", "asn_painted": 0,
                  "asn_jobs": {kind: _job_state(JobView("No job yet.", None, False)) for kind in JOB_KINDS},
                  "asn_charts": [], "asn_models": [], "asn_model": None, "asn_tta": False,
                  "asn_uncertainty": False, "asn_segments": [], "asn_downloads": []})


def _job_state(view: JobView) -> dict:
    return {"text": view.text, "fraction": view.fraction, "running": view.running}


def _bind_handlers(server, session: WebSession) -> None:
    state, ctrl = server.state, server.controller

    def attempt(action, done: str):
        try:
            result = action()
        except USER_ERRORS as exc:
            log.warning("%s", exc)
            state.asn_message = f"Error: {exc}"
            return
        state.asn_message = done.format(result=result)
        state.asn_cases = session.cases()

    def schedule() -> dict:
        return {"configuration": state.asn_configuration, "fold": state.asn_fold,
                "epochs": number(state.asn_epochs, "Epochs", int, required=True),
                "iterations_per_epoch": number(state.asn_iterations, "Iterations per epoch", int),
                "time_budget_minutes": number(state.asn_budget, "Time budget", float, 0.0),
                "device": state.asn_device, "amp": state.asn_amp}

    ctrl.asn_load = lambda: attempt(lambda: _shown(state, session, session.load_volume(state.asn_path)),
                                    "Loaded {result}: paint on a slice view.")
    ctrl.asn_add_case = lambda: attempt(session.add_case, "Added {result} as a training case.")
    ctrl.asn_add_corrected = lambda: attempt(session.add_corrected_case, "Added {result} as a corrected case.")
    ctrl.asn_train = lambda: attempt(lambda: session.start_training(schedule()), "Training started.")
    ctrl.asn_resume = lambda: attempt(lambda: session.start_training(schedule(), resume=True),
                                      "Training resumed from its latest checkpoint.")
    ctrl.asn_retrain = lambda: attempt(lambda: session.start_retraining(schedule()),
                                       "Retraining from {result} with all cases.")
    ctrl.asn_stop = lambda: attempt(session.stop, "Stop requested (the training saves a checkpoint first).")
    ctrl.asn_segment = lambda: attempt(lambda: _segment(state, session), "Segmenting with {result}.")
    ctrl.asn_download = lambda file_format: attempt(lambda: _downloaded(state, session.download_segmentation(
        file_format)), "Saved {result}: the link is below.")
    ctrl.asn_export_model = lambda: attempt(lambda: session.export_model(state.asn_model).name,
                                            "Zipping the chosen model into {result}.")
    _take_over_upload(session, lambda files: attempt(lambda: _shown(state, session, session.upload(files)),
                                                     "Uploaded and loaded {result}: paint on a slice view."))


def _take_over_upload(session: WebSession, handler) -> None:
    """Route trame-slicer's upload buttons to ``handler``: its own handler clears the whole scene, which would
    drop the training cases (trame-slicer 2.0.0, ``LoadVolumeLogic._load_volume_files``)."""
    buttons = session.app._ui.load_volume_items_buttons  # 2.0.0 has no public accessor
    if not buttons.on_load_volume.disconnect(session.logic._load_files_logic._load_volume_files):
        log.warning("trame-slicer's upload handler was not found; uploads may clear the scene")
    buttons.on_load_volume.connect(handler)


def _shown(state, session: WebSession, name: str) -> str:
    """After a volume was loaded or uploaded: the page shows it and its (new, empty) segmentation."""
    state.asn_volume = name
    state.asn_segments = session.segment_names()
    return name


def _segment(state, session: WebSession) -> str:
    return session.segment(state.asn_model, uncertainty=bool(state.asn_uncertainty), tta=bool(state.asn_tta),
                           device=state.asn_device)


def _downloaded(state, file: Path) -> str:
    state.asn_downloads = sorted({*state.asn_downloads, file.name})
    return file.name


def _refresh_models(state, session: WebSession) -> None:
    """The model select (newest first: title, and the model folder as value); a new model gets selected."""
    models = [{"title": m.display_name(), "value": str(m.folder)} for m in reversed(session.models())]
    if len(models) != len(state.asn_models) or state.asn_model not in [m["value"] for m in models]:
        state.asn_model = models[0]["value"] if models else None
    state.asn_models = models


async def _follow_jobs(state, session: WebSession) -> None:
    """The page's timer: re-attach once, then follow the jobs; never blocks the server's loop."""
    try:
        found = session.reattach()
        with state:
            _refresh_models(state, session)
            if found:
                state.asn_message = f"Re-attached to {found} running job(s) of this workspace."
    except Exception:  # the page must come up even if the workspace's jobs cannot be read
        log.exception("Could not re-attach to the workspace's jobs")
    while True:
        await asyncio.sleep(POLL_IN_PROCESS_S if session.workflow.working_in_process else POLL_S)
        try:
            _refresh(state, session)
        except Exception:  # the timer must survive a failing refresh; the log has the details
            log.exception("Error while following the jobs")


def _refresh(state, session: WebSession) -> None:
    views, ended = session.poll()
    new_segments = session.take_segmentation()
    with state:
        state.asn_jobs = {kind: _job_state(view) for kind, view in views.items()}
        state.asn_painted = session.painted_voxels() if session.volume is not None else 0
        state.asn_charts = session.curves()
        if new_segments is not None:
            state.asn_segments = new_segments
            overlay = " (uncertainty shown over the image)" if session.overlay_shown else ""
            state.asn_message = (f"Segmented: {', '.join(new_segments)}{overlay}. Correct it, then add it as a "
                                 "corrected case.")
        if ended:  # listing cases registers MRML classes and models reads files: not on every tick
            state.asn_cases = session.cases()
            _refresh_models(state, session)
            zipped = session.workflow.jobs.get("zip")
            if zipped is not None and zipped.state.status == "finished":
                state.asn_downloads = sorted({*state.asn_downloads, *_zips(session)})


def _zips(session: WebSession) -> list[str]:
    return [p.name for p in downloads_folder(session.dataset.workspace_root).glob("*.zip")]
