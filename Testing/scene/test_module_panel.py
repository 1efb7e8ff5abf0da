"""The module panel's handlers and timer callback, driven click by click over the real workflow and scene.

The widgets of ``AutoSegNet.ui`` need PythonQt, which exists only inside Slicer, so each is stood in for by a
:class:`RecordingWidget` that accepts only the names the ``.ui`` defines, remembers connected handlers (so a
test can click) and records what the panel wrote. Everything behind the widgets is real: Slicer's
``slicer.util`` (``tryWithErrorDisplay``), the parameter node wrapper, MRML and the workflow's jobs.
"""

from __future__ import annotations

import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from AutoSegNetSceneLib.synthetic import add_synthetic_case

from AutoSegNetLib.jobs.engine_job import EngineJob
from Testing.scene import slicer_layer

REPO_ROOT = Path(__file__).resolve().parents[2]
UI_CLASSES = {w.get("name"): w.get("class")
              for w in ET.parse(REPO_ROOT / "AutoSegNet/Resources/UI/AutoSegNet.ui").iter("widget")}
UI_NAMES = set(UI_CLASSES)
FAKE = str(Path(__file__).with_name("fake_engine.py"))


class RecordingWidget:
    """A Qt widget stand-in: any method call is recorded and returns what :meth:`returns` configured."""

    def __init__(self, name: str) -> None:
        self.__dict__.update(_name=name, _handlers={}, _returns={}, calls=[])

    def connect(self, signal: str, handler) -> None:
        self._handlers[signal] = handler

    def click(self) -> None:
        self._handlers["clicked(bool)"](False)

    def returns(self, method: str, value) -> RecordingWidget:
        self._returns[method] = value
        return self

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)

        def method(*args):
            self.calls.append((name, args))
            result = self._returns.get(name)
            return result(*args) if callable(result) else result

        return method


class RecordingUi:
    """``slicer.util.childWidgetVariables(uiWidget)``: only names that the .ui defines."""

    def __getattr__(self, name: str) -> RecordingWidget:
        if name not in UI_NAMES:
            raise AttributeError(f"AutoSegNet.ui has no widget named {name!r}")
        widget = RecordingWidget(name)
        setattr(self, name, widget)
        return widget


class FakeQt(types.ModuleType):
    """The few Qt classes the panel builds itself."""

    class QTimer(RecordingWidget):
        def __init__(self) -> None:
            super().__init__("timer")

    class QTableWidgetItem:
        def __init__(self, text: str) -> None:
            self.text = text

    Qt = types.SimpleNamespace(Unchecked=0, Checked=2)

    class QSettings:
        """Slicer's settings file, in memory."""

        store: dict = {}

        def value(self, key: str, default=None):
            return self.store.get(key, default)

        def setValue(self, key: str, value) -> None:
            self.store[key] = value


@pytest.fixture
def panel(a_scene, a_workspace, monkeypatch):
    module = slicer_layer.load_module()
    import AutoSegNetPanelLib.panel as panel_module

    monkeypatch.setattr(panel_module, "qt", FakeQt("qt"))
    logic = module.AutoSegNetLogic()
    parameters = logic.getParameterNode()
    parameters.workspace = a_workspace
    panel = panel_module.Panel(RecordingUi(), logic, lambda: parameters)
    panel.ui.modelComboBox.currentIndex = -1  # an empty Qt combo box
    panel.ui.catalogueComboBox.currentIndex = -1
    panel.start()
    yield panel
    for job in logic.workflow.jobs.values():
        if job.running:
            job.kill()
            job.wait(timeout=20)


def test_every_button_is_connected_and_the_timer_runs_every_half_second(panel):
    buttons = {n for n, cls in UI_CLASSES.items() if cls == "QPushButton"}
    connected = {n for n in buttons if "clicked(bool)" in getattr(panel.ui, n)._handlers}
    assert connected == buttons and "stopSegmentButton" in connected
    assert ("setInterval", (500,)) in panel.timer.calls and ("start", ()) in panel.timer.calls


def test_adding_a_case_fills_the_table_and_clears_the_extra_channel_ticks(panel, a_scene):
    volume, segmentation, _ = add_synthetic_case(a_scene, "patient", seed=1)
    extra, _, _ = add_synthetic_case(a_scene, "patient T2", seed=2)
    panel.ui.caseVolumeSelector.returns("currentNode", volume)
    panel.ui.caseLabelsSelector.returns("currentNode", segmentation)
    panel.ui.caseExtraChannelsSelector.returns("checkedNodes", [])
    panel.ui.addCaseButton.click()
    rows = [c for c in panel.ui.casesTable.calls if c[0] == "setItem"]
    assert [args[2].text for _, args in rows] == ["case_0001", "patient", "patient segmentation", "ball, box", "new"]

    panel.ui.caseExtraChannelsSelector.returns("checkedNodes", [extra])
    second, labels2, _ = add_synthetic_case(a_scene, "patient 2", seed=3)
    panel.ui.caseVolumeSelector.returns("currentNode", second)
    panel.ui.caseLabelsSelector.returns("currentNode", labels2)
    panel.ui.addCaseButton.click()
    assert ("setCheckState", (extra, FakeQt.Qt.Unchecked)) in panel.ui.caseExtraChannelsSelector.calls


def test_a_failing_action_raises_its_message_through_slicers_error_display(panel, a_scene):
    panel.ui.segmentExtraChannelsSelector.returns("checkedNodes", [])
    with pytest.raises(ValueError, match="Select a volume first"):
        panel.ui.segmentButton.click()
    volume, _, _ = add_synthetic_case(a_scene, "target")
    panel.ui.segmentVolumeSelector.returns("currentNode", volume)
    with pytest.raises(ValueError, match="Choose a model first"):
        panel.ui.segmentButton.click()


def test_the_timer_shows_progress_and_a_finished_verify_leaves_the_result_selection_alone(panel, tmp_path):
    job = EngineJob.start_command([sys.executable, FAKE, "epochs", "2", "0.05"], tmp_path / "jobs", "train")
    panel.workflow.jobs["train"] = job
    deadline = time.monotonic() + 30
    while job.running and time.monotonic() < deadline:
        panel.onTimer()
        time.sleep(0.02)
    panel.onTimer()
    assert "finished" in panel.ui.trainingStatusLabel.text and panel.ui.trainingProgressBar.value == 100
    assert not [c for c in panel.ui.resultSegmentationSelector.calls if c[0] == "setCurrentNode"]
    assert panel.workflow.scene.GetNodesByClass("vtkMRMLPlotChartNode").GetNumberOfItems() == 0


def test_stop_asks_the_training_to_stop_and_returns_at_once(panel, tmp_path):
    job = EngineJob.start_command([sys.executable, FAKE, "graceful"], tmp_path / "jobs", "train")
    panel.workflow.jobs["train"] = job
    while job.state.stage != "train":
        panel.onTimer()
        time.sleep(0.02)
    started = time.perf_counter()
    panel.ui.stopButton.click()
    assert time.perf_counter() - started < 0.2
    deadline = time.monotonic() + 20
    while job.running and time.monotonic() < deadline:
        panel.onTimer()
        time.sleep(0.02)
    assert job.state.status == "stopped"


def test_the_catalogue_is_listed_and_an_empty_one_disables_its_install_button(panel):
    assert panel._catalogue == panel.workflow.catalogue()  # the index shipped with the engine
    assert ("setEnabled", ()) not in panel.ui.installCatalogueButton.calls
    assert panel.ui.installCatalogueButton.enabled is bool(panel._catalogue)
    if not panel._catalogue:
        with pytest.raises(ValueError, match="no model to install yet"):
            panel.ui.installCatalogueButton.click()


def answer_of_test_connection(panel, timeout_s: float = 15.0) -> str:
    """Run the panel's timer until Test connection's background call has answered; the label then."""
    deadline = time.monotonic() + timeout_s
    while panel.ui.serverInfoLabel.text.startswith("Connecting to ") and time.monotonic() < deadline:
        time.sleep(0.05)
        panel.onTimer()
    return panel.ui.serverInfoLabel.text


def test_the_server_engine_is_chosen_in_setup_and_its_token_stays_out_of_the_scene(panel, tmp_path):
    pytest.importorskip("fastapi", reason="the server needs the 'server' extra (fastapi, uvicorn)")
    from Testing.engine._helpers_server import ALICE, running_server

    with running_server(tmp_path / "server") as server:
        panel.parameters.engine = "server"
        panel.parameters.serverUrl = server.url
        panel.ui.serverTokenLineEdit.text = ALICE
        panel.ui.testConnectionButton.click()
        assert panel.ui.serverInfoLabel.text.startswith("Connecting to "), "the click must not wait for the server"
        assert answer_of_test_connection(panel).startswith("Connected: AutoSegNet ")
        assert " as alice; cpu" in panel.ui.serverInfoLabel.text
        assert panel.logic.workflow.engine.remote and FakeQt.QSettings.store["AutoSegNet/serverToken"] == ALICE
        node = panel.parameters.parameterNode
        stored = [node.GetParameter(name) for name in node.GetParameterNames()]
        assert server.url in stored and not any(ALICE in value for value in stored)  # the scene never holds it

        panel.ui.serverTokenLineEdit.text = "wrong-token-0123456789"
        panel.ui.testConnectionButton.click()
        answer = answer_of_test_connection(panel)
        assert answer.startswith("Could not connect: ") and "401" in answer

    panel.parameters.engine = "this computer"
    panel.ui.testConnectionButton.click()
    assert panel.ui.serverInfoLabel.text == "Jobs run on this computer."
    assert not panel.logic.workflow.engine.remote


def test_a_ca_file_reaches_the_connection_and_stays_in_the_settings(panel, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    panel.parameters.engine = "server"
    panel.parameters.serverUrl = "https://gpu-server:8765"
    panel.ui.serverTokenLineEdit.text = "t" * 20
    panel.ui.serverCaFileLineEdit.text = str(ca)
    engine = panel._engine()
    assert engine.connection.cafile == str(ca) and FakeQt.QSettings.store["AutoSegNet/serverCaFile"] == str(ca)
    node = panel.parameters.parameterNode
    assert not any(str(ca) in node.GetParameter(name) for name in node.GetParameterNames())

    panel.ui.serverCaFileLineEdit.text = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match="CA file not found"):
        panel._engine()
    panel.ui.serverCaFileLineEdit.text = ""
    assert panel._engine().connection.cafile is None
