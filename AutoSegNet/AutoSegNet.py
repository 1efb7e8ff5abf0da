"""AutoSegNet: train self-configuring segmentation models on cases from the scene, segment, correct, retrain.

Thin on purpose: the scene glue lives in ``AutoSegNetSceneLib`` (MRML + engine only) and the engine in
``AutoSegNetLib``; both are imported lazily, so loading the module imports neither torch nor the engine's
dependencies (they may not be installed yet: see "Install dependencies").
"""

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import slicer
from AutoSegNetSceneLib.options import CONFIGURATIONS, DEVICES, FOLDS
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

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
    """What the user chose in the module panel (saved with the scene)."""

    workspace: Path = Path.home() / "AutoSegNet"
    datasetId: Annotated[int, WithinRange(1, 999)] = 501
    datasetName: str = "SlicerCases"
    channelNames: str = "CT"
    caseVolume: vtkMRMLScalarVolumeNode
    caseLabels: vtkMRMLSegmentationNode | vtkMRMLLabelMapVolumeNode
    configuration: Annotated[str, Choice(list(CONFIGURATIONS))] = "auto"
    fold: Annotated[str, Choice(list(FOLDS))] = "all"
    epochs: Annotated[int, WithinRange(1, 5000)] = 100
    retrainEpochs: Annotated[int, WithinRange(1, 5000)] = 20
    timeBudgetMinutes: Annotated[float, WithinRange(0.0, 100000.0)] = 0.0
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    segmentVolume: vtkMRMLScalarVolumeNode
    fastPreview: bool = True
    saveUncertainty: bool = False
    resultSegmentation: vtkMRMLSegmentationNode
    modelZip: Path = Path()


class AutoSegNetWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Wires the .ui to the logic; all work happens in :class:`AutoSegNetLogic`."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._models = []
        self._chartEpochs = -1

    def setup(self) -> None:
        import qt

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoSegNet.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AutoSegNetLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        handlers = [
            (self.ui.installButton, self.onInstall), (self.ui.addCaseButton, self.onAddCase),
            (self.ui.removeCaseButton, self.onRemoveCase), (self.ui.renameLabelButton, self.onRenameLabel),
            (self.ui.exportButton, self.onExport), (self.ui.trainButton, self.onTrain),
            (self.ui.stopButton, self.onStop), (self.ui.resumeButton, self.onResume),
            (self.ui.retrainButton, self.onRetrain), (self.ui.segmentButton, self.onSegment),
            (self.ui.addCorrectedButton, self.onAddCorrected), (self.ui.refreshModelsButton, self.refreshModels),
            (self.ui.installModelButton, self.onInstallModel), (self.ui.showChartButton, self.onShowChart),
        ]
        for button, handler in handlers:
            button.connect("clicked(bool)", lambda _checked=False, h=handler: self._guarded(h))
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onTimer)
        self.initializeParameterNode()
        self._reattach()
        self.timer.start()

    def _guarded(self, handler) -> None:
        with slicer.util.tryWithErrorDisplay(_("AutoSegNet: the action failed."), waitCursor=True):
            handler()

    # ----- parameter node (as in Slicer's scripted module template) --------------------------------------
    def cleanup(self) -> None:
        self.timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.refreshCases()

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

    # ----- actions ----------------------------------------------------------------------------------------
    def onInstall(self) -> None:
        self.logic.installDependencies(confirm=slicer.util.confirmOkCancelDisplay)
        self.ui.dependencyLabel.text = self.logic.dependencyReport()

    def _caseChannels(self, volumeSelector, extraSelector) -> list:
        return [volumeSelector.currentNode(), *extraSelector.checkedNodes()]

    def onAddCase(self) -> None:
        channels = self._caseChannels(self.ui.caseVolumeSelector, self.ui.caseExtraChannelsSelector)
        self.logic.addTrainingCase(channels, self.ui.caseLabelsSelector.currentNode())
        self.refreshCases()

    def onAddCorrected(self) -> None:
        channels = self._caseChannels(self.ui.segmentVolumeSelector, self.ui.segmentExtraChannelsSelector)
        self.logic.addTrainingCase(channels, self.ui.resultSegmentationSelector.currentNode(), corrected=True)
        self.refreshCases()

    def onRemoveCase(self) -> None:
        row = self.ui.casesTable.currentRow()
        cases = self.logic.trainingSet().cases()
        if 0 <= row < len(cases):
            self.logic.removeTrainingCase(cases[row].volume)
        self.refreshCases()

    def onRenameLabel(self) -> None:
        self.logic.trainingSet().rename_label(self.ui.labelsComboBox.currentText, self.ui.newLabelNameEdit.text)
        self.refreshCases()

    def onExport(self) -> None:
        dataset = self.logic.datasetSettings(self._parameterNode)
        report = self.logic.exportTrainingSet(dataset)
        self.ui.exportReportText.plainText = report.summary() + "\n" + _("Checking the dataset (verify)...")
        self.logic.startVerify(dataset)
        self.refreshCases()

    def onTrain(self, resume: bool = False) -> None:
        p = self._parameterNode
        self.logic.startTraining(self.logic.datasetSettings(p), self.logic.trainingSettings(p), resume=resume)
        self._chartEpochs = -1

    def onResume(self) -> None:
        self.onTrain(resume=True)

    def onStop(self) -> None:
        self.logic.stopTraining()

    def onRetrain(self) -> None:
        p = self._parameterNode
        training = self.logic.trainingSettings(p, epochs=p.retrainEpochs)
        self.logic.startRetraining(self.logic.datasetSettings(p), training, self._selectedModel())
        self._chartEpochs = -1

    def onSegment(self) -> None:
        p = self._parameterNode
        channels = self._caseChannels(self.ui.segmentVolumeSelector, self.ui.segmentExtraChannelsSelector)
        self.logic.startSegmentation(p.workspace, channels, self._selectedModel(), p.fastPreview,
                                     p.saveUncertainty, p.device)

    def onInstallModel(self) -> None:
        self.logic.startModelInstall(self._parameterNode.workspace, self._parameterNode.modelZip)

    def onShowChart(self) -> None:
        chart = self.logic.updateTrainingChart()
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def _selectedModel(self):
        index = self.ui.modelComboBox.currentIndex
        if not 0 <= index < len(self._models):
            raise ValueError(_("Choose a model first (train one, or install one from a zip)."))
        return self._models[index]

    def _reattach(self) -> None:
        try:
            jobs = self.logic.reattachJobs(self.logic.datasetSettings(self._parameterNode))
        except Exception as exc:  # e.g. no workspace chosen yet: nothing to re-attach to
            log.info("No jobs to re-attach to: %s", exc)
            return
        if jobs:
            self.ui.trainingStatusLabel.text = _("Re-attached to {n} running job(s).").format(n=len(jobs))

    # ----- views ------------------------------------------------------------------------------------------
    def refreshCases(self) -> None:
        import qt

        trainingSet = self.logic.trainingSet()
        cases = trainingSet.cases()
        table = self.ui.casesTable
        table.setRowCount(len(cases))
        for row, case in enumerate(cases):
            cells = [case.name, case.volume.GetName(), case.label_node.GetName(), ", ".join(case.segment_names),
                     case.status]
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        labels = trainingSet.labels
        self.ui.labelsComboBox.clear()
        for name in labels.names():
            self.ui.labelsComboBox.addItem(name)
        self.ui.labelsLabel.text = ", ".join(f"{n} = {v}" for n, v in labels.as_dict().items()) or _("none yet")

    def refreshModels(self) -> None:
        if self._parameterNode is None:
            return
        self._models = self.logic.models(self._parameterNode.workspace)
        self.ui.modelComboBox.clear()
        for model in self._models:
            self.ui.modelComboBox.addItem(model.display_name())
        self.ui.modelComboBox.currentIndex = len(self._models) - 1

    def onTimer(self) -> None:
        finished = self.logic.pollJobs()
        for kind, label, bar in (("train", self.ui.trainingStatusLabel, self.ui.trainingProgressBar),
                                 ("segment", self.ui.segmentStatusLabel, self.ui.segmentProgressBar)):
            job = self.logic.jobs.get(kind)
            if job is not None:
                label.text = job.state.describe()
                bar.value = int(100 * (job.state.fraction or 0))
        train = self.logic.jobs.get("train")
        if train is not None and len(train.state.history) != self._chartEpochs:
            self._chartEpochs = len(train.state.history)
            self.logic.updateTrainingChart()
        verify = self.logic.jobs.get("verify")
        if verify is not None and verify in finished:
            self.ui.exportReportText.appendPlainText(self.logic.verifySummary(verify))
        if finished:
            self.refreshModels()
            self.refreshCases()
            if self.logic.lastSegmentation is not None:
                self.ui.resultSegmentationSelector.setCurrentNode(self.logic.lastSegmentation)


class AutoSegNetLogic(ScriptedLoadableModuleLogic):
    """The whole loop, usable without the widget (scripts, notebooks, the self-test).

    Long steps run as background engine jobs kept in :attr:`jobs` by kind (``train``, ``segment``, ``verify``,
    ``install``); call :meth:`pollJobs` regularly (the widget does every 0.5 s) or ``job.wait()``.
    """

    def __init__(self, scene=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._scene = scene
        self.jobs = {}
        self.lastSegmentation = None
        self.lastUncertainty = None

    @property
    def scene(self):
        return self._scene or slicer.mrmlScene

    def getParameterNode(self):
        return AutoSegNetParameterNode(super().getParameterNode())

    # ----- settings ----------------------------------------------------------------------------------------
    @staticmethod
    def datasetSettings(p):
        from AutoSegNetSceneLib.settings import DatasetSettings

        return DatasetSettings(p.workspace, p.datasetId, p.datasetName,
                               DatasetSettings.parse_channel_names(p.channelNames))

    @staticmethod
    def trainingSettings(p, **overrides):
        from AutoSegNetSceneLib.settings import TrainingSettings

        values = dict(configuration=p.configuration, fold=p.fold, epochs=p.epochs,
                      time_budget_minutes=p.timeBudgetMinutes, device=p.device)
        return TrainingSettings(**{**values, **overrides})

    # ----- dependencies --------------------------------------------------------------------------------
    def requirementsPath(self) -> Path:
        return Path(__file__).resolve().parent / "Resources" / "requirements.txt"

    def dependencyReport(self) -> str:
        from AutoSegNetSceneLib import install

        return install.dependency_report(self.requirementsPath())

    def installDependencies(self, confirm) -> bool:
        from AutoSegNetSceneLib import install

        return install.install_dependencies(self.requirementsPath(), confirm)

    # ----- training set ---------------------------------------------------------------------------------
    def trainingSet(self):
        from AutoSegNetSceneLib.cases import TrainingSet

        return TrainingSet(self.scene)

    def addTrainingCase(self, channelVolumes, labelNode, corrected: bool = False):
        return self.trainingSet().add_case(channelVolumes, labelNode, corrected)

    def removeTrainingCase(self, volume) -> None:
        self.trainingSet().remove_case(volume)

    def exportTrainingSet(self, dataset):
        from AutoSegNetSceneLib.export import export_training_set

        return export_training_set(self.trainingSet(), dataset)

    # ----- jobs ------------------------------------------------------------------------------------------
    def _startJob(self, kind: str, job):
        self.jobs[kind] = job
        return job

    def _refuseIfRunning(self, kind: str) -> None:
        job = self.jobs.get(kind)
        if job is not None and job.running:
            raise RuntimeError(_("A {kind} job is still running; stop it or wait for it to finish.").format(kind=kind))

    def startVerify(self, dataset):
        from AutoSegNetSceneLib import commands
        from AutoSegNetSceneLib.jobs import EngineJob

        report = dataset.workspace_root / "jobs" / f"verify-{dataset.folder_name}.json"
        report.unlink(missing_ok=True)
        job = EngineJob.start(commands.verify(dataset, report), dataset.workspace_root / "jobs", "verify",
                              meta={"report": str(report)})
        return self._startJob("verify", job)

    @staticmethod
    def verifySummary(job) -> str:
        from AutoSegNetSceneLib.export import verify_summary

        return verify_summary(Path(job.meta["report"]), job.state.status, job.state.message or job.log_tail(5))

    def resolveConfiguration(self, configuration: str) -> str:
        """``auto``: 2d when a training volume has a single slice, else 3d_fullres."""
        if configuration != "auto":
            return configuration
        from AutoSegNetSceneLib.volumes import dimensions_zyx

        flat = any(dimensions_zyx(case.volume)[0] == 1 for case in self.trainingSet().cases())
        return "2d" if flat else "3d_fullres"

    def startTraining(self, dataset, training, resume: bool = False, pretrained=None):
        """Export, plan and preprocess (or only preprocess when fine-tuning), then train; in the background."""
        from AutoSegNetSceneLib import commands
        from AutoSegNetSceneLib.jobs import JobChain, JobStep

        self._refuseIfRunning("train")
        configuration = self.resolveConfiguration(training.configuration)
        steps = []
        if not resume:
            self.exportTrainingSet(dataset)
            prepare = commands.preprocess if pretrained else commands.plan_and_preprocess
            steps.append(JobStep("preprocess", prepare(dataset, configuration)))
        steps.append(JobStep("train", commands.train(dataset, training, configuration, resume, pretrained)))
        meta = {"dataset": dataset.folder_name, "configuration": configuration, "fold": training.fold,
                "workspace": str(dataset.workspace_root), "pretrained": str(pretrained) if pretrained else None}
        chain = JobChain(steps, dataset.workspace_root / "jobs", "train", meta=meta).start()
        chain.on_finished.append(lambda job: self._onTrainingFinished(job, meta))
        return self._startJob("train", chain)

    def startRetraining(self, dataset, training, fromModel):
        """Fine-tune from ``fromModel`` (a ModelInfo, e.g. the latest version) with the current cases."""
        from AutoSegNetSceneLib import models

        configuration = fromModel.configuration
        fold = training.fold if training.fold in fromModel.folds else fromModel.folds[0]
        working = models.working_model_folder(dataset.workspace.results / dataset.folder_name, configuration)
        if working is not None:
            models.prepare_for_finetuning(working, fold, dataset.workspace_root / "versions", dataset.folder_name,
                                          configuration)
        training = replace(training, configuration=configuration, fold=fold)
        pretrained = fromModel.folder / f"fold_{fold}" / models.CHECKPOINT
        return self.startTraining(dataset, training, pretrained=pretrained)

    def _onTrainingFinished(self, job, meta: dict) -> None:
        from AutoSegNetSceneLib import models

        if job.state.status != "finished":
            return
        root = Path(meta["workspace"])
        working = models.working_model_folder(root / "results" / meta["dataset"], meta["configuration"])
        if working is not None:
            models.snapshot_version(working, root / "versions", meta["dataset"], meta["configuration"],
                                    based_on=meta.get("pretrained"))

    def stopTraining(self) -> None:
        job = self.jobs.get("train")
        if job is not None and job.running:
            job.stop()

    def startSegmentation(self, workspaceRoot, channelVolumes, model, fastPreview: bool = True,
                          saveUncertainty: bool = False, device: str = "auto", outputNode=None):
        """Predict ``channelVolumes`` with ``model`` in the background; the result lands in a segmentation node."""
        from AutoSegNetSceneLib import commands, segment
        from AutoSegNetSceneLib.jobs import EngineJob

        self._refuseIfRunning("segment")
        if len(channelVolumes) != len(model.channel_names):
            raise ValueError(_("The model takes {n} channel(s) ({names}); select one volume per channel.").format(
                n=len(model.channel_names), names=", ".join(model.channel_names)))
        jobsRoot = Path(workspaceRoot) / "jobs"
        jobsRoot.mkdir(parents=True, exist_ok=True)
        folders = segment.PredictionFolders(Path(tempfile.mkdtemp(prefix="prediction-", dir=jobsRoot)))
        segment.write_prediction_input(channelVolumes, folders)
        folds = model.folds[:1] if fastPreview else model.folds
        args = commands.predict(workspaceRoot, folders.input, folders.output, model.folder, folds,
                                tta=not fastPreview, save_uncertainty=saveUncertainty, device=device)
        job = EngineJob.start(args, jobsRoot, "segment", meta={"model": str(model.folder)})
        job.on_finished.append(lambda j: self._importSegmentation(j, folders, channelVolumes[0], model, outputNode))
        return self._startJob("segment", job)

    def _importSegmentation(self, job, folders, volume, model, outputNode) -> None:
        import shutil

        from AutoSegNetSceneLib import segment

        if job.state.status != "finished":
            return
        try:
            result = segment.import_prediction_output(self.scene, folders, volume, model.labels,
                                                      segmentation_node=outputNode)
        except Exception as exc:  # reported through the job, like an engine failure
            job.state.status, job.state.message = "failed", str(exc)
            return
        self.lastSegmentation, self.lastUncertainty = result["segmentation"], result["uncertainty"]
        shutil.rmtree(folders.root, ignore_errors=True)

    def startModelInstall(self, workspaceRoot, zipFile):
        from AutoSegNetSceneLib import commands
        from AutoSegNetSceneLib.jobs import EngineJob

        if not Path(zipFile).is_file():
            raise ValueError(_("Choose the model zip file to install (it was not found: {path}).").format(path=zipFile))
        job = EngineJob.start(commands.install_model(workspaceRoot, zipFile), Path(workspaceRoot) / "jobs", "install")
        return self._startJob("install", job)

    def models(self, workspaceRoot):
        from AutoSegNetSceneLib.models import find_models

        return find_models(Path(workspaceRoot))

    def pollJobs(self) -> list:
        """Advance every job; returns those that finished during this call."""
        finished = []
        for job in list(self.jobs.values()):
            if job.running:
                try:
                    job.poll()
                except Exception:  # a failing callback must not break the timer that polls every job
                    log.exception("Error while following a %s job", getattr(job, "kind", ""))
                if not job.running:
                    finished.append(job)
        return finished

    def reattachJobs(self, dataset) -> list:
        """After a restart: follow the engine jobs of this workspace that are still running, and trainings of
        the dataset that were started elsewhere (through their fold's ``status.json``)."""
        from AutoSegNetSceneLib.jobs import EngineJob, find_jobs, find_status_files

        jobs = find_jobs(dataset.workspace_root / "jobs")
        for job in jobs:
            if job.kind == "train" and job.meta.get("step") == "train":
                job.on_finished.append(lambda j: self._onTrainingFinished(j, j.meta))
            self.jobs.setdefault(job.kind, job)
        if "train" not in self.jobs:
            for status in find_status_files(dataset.workspace.results / dataset.folder_name):
                self.jobs["train"] = EngineJob.from_status_file(status)
                jobs.append(self.jobs["train"])
                break
        return jobs

    def updateTrainingChart(self):
        from AutoSegNetSceneLib.curves import update_training_chart

        job = self.jobs.get("train")
        history = job.state.history if job is not None else []
        names = {v: n for n, v in self.trainingSet().labels.as_dict().items()}
        return update_training_chart(self.scene, history, names)


class AutoSegNetTest(ScriptedLoadableModuleTest):
    """Self-test: ``slicer.selfTests['AutoSegNet']()`` (the body lives in ``AutoSegNetSceneLib.selftest``)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_training_set_export()
        self.setUp()
        self.test_train_segment_and_add_corrected_case()

    def test_training_set_export(self):
        from AutoSegNetSceneLib import selftest

        with tempfile.TemporaryDirectory() as workspace:
            selftest.check_training_set_export(self, AutoSegNetLogic(), Path(workspace))
        self.delayDisplay("Training set export passed")

    def test_train_segment_and_add_corrected_case(self):
        from AutoSegNetSceneLib import selftest

        with tempfile.TemporaryDirectory() as workspace:
            selftest.check_train_segment_correct(self, AutoSegNetLogic(), Path(workspace))
        self.delayDisplay("Train, segment and correct passed")
