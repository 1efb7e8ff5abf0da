"""The page: trame-slicer's segmentation app plus an AutoSegNet panel on the right.

The panel: a server-side file path + *Load*, *Add as training case*, the cases table, *Train* (epochs,
iterations per epoch) and *Stop*, and the training progress, refreshed by a timer task on the server that calls
:meth:`WebSession.poll` (which never waits).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from trame.app import get_server
from trame.widgets import html
from trame.widgets import vuetify3 as v

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.web.app import WebSession

log = logging.getLogger(__name__)
POLL_S = 1.0  # how often the timer follows the jobs
POLL_IN_PROCESS_S = 0.05  # while an export is staged on the server's thread, one short step per call
USER_ERRORS = (AutoSegNetError, RuntimeError, ValueError, OSError)


def build_server(workspace: Path, server=None):
    """A trame server with the AutoSegNet web UI over ``workspace``; call ``server.start(...)`` on it."""
    server = server or get_server(client_type="vue3")
    session = WebSession(server, workspace)
    _initial_state(server.state, workspace)
    _bind_handlers(server, session)
    _build_panel(session)
    server.controller.on_server_ready.add_task(lambda **_: _follow_jobs(server.state, session))
    return server


def _initial_state(state, workspace: Path) -> None:
    state.trame__title = "AutoSegNet"
    state.asn_path = ""
    state.asn_volume = ""
    state.asn_message = f"Workspace: {workspace}"
    state.asn_cases = []
    state.asn_epochs = 1
    state.asn_iterations = ""
    state.asn_progress_text = "No training yet."
    state.asn_progress = None
    state.asn_running = False
    state.asn_painted = 0


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

    def load():
        attempt(lambda: _loaded(state, session), "Loaded {result}: paint on the slice view.")

    def add_case():
        attempt(session.add_case, "Added {result} as a training case.")

    def train():
        iterations = int(state.asn_iterations) if str(state.asn_iterations).strip() else None
        attempt(lambda: session.start_training(int(state.asn_epochs), iterations), "Training started.")

    def stop():
        attempt(session.stop, "Stop requested (the training saves a checkpoint first).")

    ctrl.asn_load, ctrl.asn_add_case, ctrl.asn_train, ctrl.asn_stop = load, add_case, train, stop


def _loaded(state, session: WebSession) -> str:
    name = session.load_volume(state.asn_path)
    state.asn_volume = name
    return name


def _build_panel(session: WebSession) -> None:
    ctrl = session.app.server.controller
    session.app.ui.title.set_text("AutoSegNet (preview)")
    drawer_options = {"location": "right", "permanent": True, "width": 380}
    with session.app.ui, v.VNavigationDrawer(**drawer_options), v.VCard(flat=True, classes="pa-3"):
        v.VCardTitle("AutoSegNet")
        v.VTextField(v_model=("asn_path",), label="Image file on the server", density="compact",
                     id="asn-path", hide_details=True)
        v.VBtn("Load volume", click=ctrl.asn_load, id="asn-load", block=True, classes="my-2")
        v.VBtn("Add as training case", click=ctrl.asn_add_case, id="asn-add-case",
               block=True, disabled=("!asn_volume",), color="primary")
        html.Div("{{ asn_painted }} voxel(s) painted in the active segment", id="asn-painted",
                 classes="text-caption")
        html.Div("{{ asn_message }}", id="asn-message", classes="text-caption my-2")
        _cases_table()
        v.VDivider(classes="my-2")
        v.VTextField(v_model=("asn_epochs",), label="Epochs", type="number", density="compact",
                     id="asn-epochs", hide_details=True, classes="mb-2")
        v.VTextField(v_model=("asn_iterations",), label="Iterations per epoch (blank: default)",
                     density="compact", id="asn-iterations", hide_details=True)
        with html.Div(classes="d-flex my-2"):
            v.VBtn("Train", click=ctrl.asn_train, id="asn-train", color="primary",
                   disabled=("asn_running || asn_cases.length === 0",), classes="mr-2")
            v.VBtn("Stop", click=ctrl.asn_stop, id="asn-stop", disabled=("!asn_running",))
        v.VProgressLinear(model_value=("asn_progress === null ? 0 : 100 * asn_progress",),
                          indeterminate=("asn_running && asn_progress === null",), height=8)
        html.Div("{{ asn_progress_text }}", id="asn-progress", classes="text-caption mt-1")


def _cases_table() -> None:
    html.Div("{{ asn_cases.length }} case(s)", id="asn-case-count", classes="text-body-2")
    row = {"v_for": "c in asn_cases", "key": "c.name"}
    with v.VTable(density="compact", id="asn-cases"), html.Tbody(), html.Tr(**row):
        for field in ("name", "volume", "status", "segments"):
            html.Td("{{ c." + field + " }}")


async def _follow_jobs(state, session: WebSession) -> None:
    """The page's timer: follow the jobs, refresh progress and cases; never blocks the server's loop."""
    while True:
        await asyncio.sleep(POLL_IN_PROCESS_S if session.workflow.working_in_process else POLL_S)
        try:
            view, ended = session.poll()
            cases = session.cases() if ended else None  # listing cases registers MRML classes: not every tick
            painted = session.painted_voxels() if session.volume is not None else 0
        except Exception:  # the timer must survive a failing refresh; the log has the details
            log.exception("Error while following the jobs")
            continue
        with state:
            state.asn_progress_text, state.asn_progress, state.asn_running = view.text, view.fraction, view.running
            state.asn_painted = painted
            if cases is not None:
                state.asn_cases = cases
