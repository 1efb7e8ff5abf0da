"""AutoSegNet: train self-configuring segmentation models on cases from the scene, segment, correct, retrain.

This file holds the module, its parameter node, a thin widget and a logic that only adds the parameter node.
The loop itself is :class:`AutoSegNetSceneLib.workflow.Workflow` (plain Python over MRML) and the engine is
``AutoSegNetLib``; both are imported lazily, so loading the module imports neither torch nor the engine's
dependencies (they may not be installed yet: see "Install dependencies"). Supported: Slicer 5.10 and later.
"""

import logging
import tempfile
from pathlib import Path
from typing import Annotated

import slicer
from AutoSegNetSceneLib.slicer_version import require_slicer  # noqa: I001 (must run before the rest)

require_slicer(getattr(slicer, "app", None), minimum=(5, 10))

from AutoSegNetSceneLib.options import AMP_CHOICES, CONFIGURATIONS, DEVICES, ENGINES, FOLDS  # noqa: E402
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode  # noqa: E402
from slicer.i18n import tr as _  # noqa: E402
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: E402
from slicer.ScriptedLoadableModule import (  # noqa: E402
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin  # noqa: E402

log = logging.getLogger(__name__)


class AutoSegNet(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AutoSegNet")
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["AutoSegNet developers"]
        self.parent.helpText = _(
            "Train a self-configuring (nnU-Net family) segmentation model on training cases marked in the scene, "
            "segment new volumes, correct the results and retrain. "
            '<a href="https://github.com/autosegnet/SlicerAutoSegNet/blob/main/README.md#3d-slicer-user-guide">'
            "User guide</a>."
        )
        self.parent.acknowledgementText = _(
            "The engine follows the method of nnU-Net (Isensee et al., Nature Methods 2021)."
        )


@parameterNodeWrapper
class AutoSegNetParameterNode:
    """What the user chose in the module panel (saved with the scene). Node-valued parameters are ``| None``:
    Slicer writes their default, None, when it creates the node."""

    workspace: Path = Path.home() / "AutoSegNet"
    datasetId: Annotated[int, WithinRange(1, 999)] = 501
    datasetName: str = "SlicerCases"
    channelNames: str = "CT"
    caseVolume: vtkMRMLScalarVolumeNode | None
    caseLabels: vtkMRMLSegmentationNode | vtkMRMLLabelMapVolumeNode | None
    configuration: Annotated[str, Choice(list(CONFIGURATIONS))] = "auto"
    fold: Annotated[str, Choice(list(FOLDS))] = "all"
    epochs: Annotated[int, WithinRange(1, 5000)] = 100
    retrainEpochs: Annotated[int, WithinRange(1, 5000)] = 20
    timeBudgetMinutes: Annotated[float, WithinRange(0.0, 100000.0)] = 0.0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    amp: Annotated[str, Choice(list(AMP_CHOICES))] = "auto"  # bf16: the fast CPU training (decision 0024)
    segmentVolume: vtkMRMLScalarVolumeNode | None
    fastPreview: bool = True
    saveUncertainty: bool = False
    resultSegmentation: vtkMRMLSegmentationNode | None
    modelZip: Path = Path()
    engine: Annotated[str, Choice(list(ENGINES))] = "this computer"
    serverUrl: str = "http://127.0.0.1:8765"  # the token is not a parameter: scenes are shared, tokens are not


class AutoSegNetWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Loads the .ui, keeps the parameter node connected; the buttons, views and timer are the :class:`Panel`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panel = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        from AutoSegNetPanelLib.panel import Panel

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoSegNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AutoSegNetLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.panel = Panel(self.ui, self.logic, lambda: self._parameterNode)
        self.panel.start()

    # ----- parameter node (as in Slicer's scripted module template) --------------------------------------
    def cleanup(self) -> None:
        if self.panel is not None:
            self.panel.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.panel.refreshCases()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)


class AutoSegNetLogic(ScriptedLoadableModuleLogic):
    """The parameter node and the settings read from it; the loop is :attr:`workflow`."""

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self._workflow = None

    @property
    def scene(self):
        return self._scene or slicer.mrmlScene

    @property
    def workflow(self):
        """The :class:`~AutoSegNetSceneLib.workflow.Workflow` over this logic's scene (created on first use)."""
        if self._workflow is None or self._workflow.scene is not self.scene:
            from AutoSegNetSceneLib.workflow import Workflow

            self._workflow = Workflow(self.scene, self.requirementsPath())
        return self._workflow

    def useEngine(self, p, token: str = "", cafile: str = ""):
        """Point the workflow at this computer or at the server of the parameter node (``token``: its bearer
        token; ``cafile``: the CA certificate of a self-signed https server); keeps the engine object while the
        choice is the same. Returns the engine."""
        if p.engine == "server" and cafile and not Path(cafile).is_file():
            raise ValueError(_("CA file not found: {path}. Choose the PEM file of the certificate authority that "
                               "signed the server's certificate, or leave the field empty.").format(path=cafile))
        key = (p.engine, p.serverUrl.strip(), token, cafile) if p.engine == "server" else (p.engine,)
        if key != self.workflow.engine_key:
            from AutoSegNetSceneLib.engines import LocalEngine, RemoteEngine

            if p.engine == "server":
                from AutoSegNetLib.remote.connection import Connection

                engine = RemoteEngine(Connection(p.serverUrl.strip(), token, cafile=cafile or None))
            else:
                engine = LocalEngine()
            self.workflow.set_engine(engine, key)
        return self.workflow.engine

    def getParameterNode(self):
        return AutoSegNetParameterNode(super().getParameterNode())

    @staticmethod
    def datasetSettings(p):
        from AutoSegNetSceneLib.settings import DatasetSettings

        return DatasetSettings(p.workspace, p.datasetId, p.datasetName,
                               DatasetSettings.parse_channel_names(p.channelNames))

    @staticmethod
    def trainingSettings(p, **overrides):
        from AutoSegNetSceneLib.settings import TrainingSettings

        values = dict(configuration=p.configuration, fold=p.fold, epochs=p.epochs,
                      time_budget_minutes=p.timeBudgetMinutes, device=p.device, amp=p.amp)
        return TrainingSettings(**{**values, **overrides})

    def requirementsPath(self) -> Path:
        return Path(__file__).resolve().parent / "Resources" / "requirements.txt"


class AutoSegNetTest(ScriptedLoadableModuleTest):
    """Self-test: ``slicer.selfTests['AutoSegNet']()`` (the bodies live in ``AutoSegNetSceneLib.selftest``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        import unittest

        for test in (self.test_panel_opens_and_binds_parameters, self.test_training_set_export,
                     self.test_train_stop_resume_segment_and_correct):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as reason:  # e.g. no Qt widgets, or no torch on an extension build machine
                self.delayDisplay(f"Skipped {test.__name__}: {reason}")

    def test_panel_opens_and_binds_parameters(self):
        from AutoSegNetSceneLib import selftest

        selftest.check_panel(self)
        self.delayDisplay("Module panel passed")

    def test_training_set_export(self):
        from AutoSegNetSceneLib import selftest

        with tempfile.TemporaryDirectory() as workspace:
            selftest.check_training_set_export(self, AutoSegNetLogic().workflow, Path(workspace))
        self.delayDisplay("Training set export passed")

    def test_train_stop_resume_segment_and_correct(self):
        from AutoSegNetSceneLib import selftest

        with tempfile.TemporaryDirectory() as workspace:
            selftest.check_train_segment_correct(self, AutoSegNetLogic().workflow, Path(workspace))
        self.delayDisplay("Train, stop, resume, segment and correct passed")
