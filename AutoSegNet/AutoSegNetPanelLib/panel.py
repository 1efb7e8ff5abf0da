"""The module panel's Qt side: button handlers, the case and model views, and the 0.5 s timer.

Every handler returns at once: long work runs as engine jobs that :meth:`Panel.onTimer` follows through
``Workflow.poll`` (which never waits). The panel holds no state of the loop itself; that is the
:class:`~AutoSegNetSceneLib.workflow.Workflow` of the module logic. Needs PythonQt (Slicer's application).
"""

import logging
import threading

import qt
import slicer
from slicer.i18n import tr as _

log = logging.getLogger(__name__)
TOKEN_SETTING = "AutoSegNet/serverToken"  # in Slicer's settings, never in the scene (scenes are shared)
CA_FILE_SETTING = "AutoSegNet/serverCaFile"  # a path on this computer: a setting, not a scene parameter


class BackgroundCall:
    """``function()`` in a daemon thread; ``done``, then ``result`` or ``error`` (the exception) once it returned."""

    def __init__(self, function) -> None:
        self.result = None
        self.error = None
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True, name="AutoSegNet call")
        self._thread.start()

    def _run(self, function) -> None:
        try:
            self.result = function()
        except Exception as exc:  # handed to the GUI thread, which shows it
            self.error = exc

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()


class Panel:
    """Wires the widgets of ``AutoSegNet.ui`` (``ui``: ``slicer.util.childWidgetVariables``) to the workflow."""

    def __init__(self, ui, logic, parameterNode) -> None:
        self.ui = ui
        self.logic = logic
        self._parameterNode = parameterNode  # a function: the widget replaces the node on scene close
        self._models = []
        self._modelsGeneration = None
        self._catalogue = []
        self._connectionCheck = None  # a BackgroundCall while Test connection waits for the server
        handlers = [
            (self.ui.installButton, self.onInstall), (self.ui.addCaseButton, self.onAddCase),
            (self.ui.removeCaseButton, self.onRemoveCase), (self.ui.renameLabelButton, self.onRenameLabel),
            (self.ui.exportButton, self.onExport), (self.ui.trainButton, self.onTrain),
            (self.ui.stopButton, self.onStop), (self.ui.resumeButton, self.onResume),
            (self.ui.retrainButton, self.onRetrain), (self.ui.segmentButton, self.onSegment),
            (self.ui.stopSegmentButton, self.onStopSegment), (self.ui.addCorrectedButton, self.onAddCorrected),
            (self.ui.refreshModelsButton, self.refreshModels), (self.ui.installModelButton, self.onInstallModel),
            (self.ui.installCatalogueButton, self.onInstallCatalogueModel),
            (self.ui.showChartButton, self.onShowChart), (self.ui.testConnectionButton, self.onTestConnection),
        ]
        for button, handler in handlers:
            button.connect("clicked(bool)", lambda _checked=False, h=handler: self._guarded(h))
        self.timer = qt.QTimer()
        self.timer.setInterval(500)
        self.timer.connect("timeout()", self.onTimer)

    @property
    def parameters(self):
        return self._parameterNode()

    @property
    def workflow(self):
        return self.logic.workflow

    def start(self) -> None:
        """Re-attach to jobs left running (e.g. before a restart), then follow jobs every 0.5 s."""
        self.ui.serverTokenLineEdit.text = qt.QSettings().value(TOKEN_SETTING, "") or ""
        self.ui.serverCaFileLineEdit.text = qt.QSettings().value(CA_FILE_SETTING, "") or ""
        self._reattach()
        self.refreshModels()
        self.refreshCatalogue()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _followInProcessWork(self) -> None:
        """Poll every 20 ms while an export is staged on this thread (each poll works at most 50 ms), else 0.5 s."""
        self.timer.setInterval(20 if self.workflow.working_in_process else 500)

    def _guarded(self, handler) -> None:
        with slicer.util.tryWithErrorDisplay(_("AutoSegNet: the action failed."), waitCursor=True):
            handler()

    def _engine(self):
        """The engine the Setup section chooses (this computer or the server), set on the workflow."""
        token = self._setting(TOKEN_SETTING, self.ui.serverTokenLineEdit.text.strip())
        cafile = self._setting(CA_FILE_SETTING, self.ui.serverCaFileLineEdit.text.strip())
        return self.logic.useEngine(self.parameters, token, cafile)

    @staticmethod
    def _setting(key: str, value: str) -> str:
        """Keep ``value`` in Slicer's settings under ``key`` (not in the scene); returns it."""
        if value != (qt.QSettings().value(key, "") or ""):
            qt.QSettings().setValue(key, value)
        return value

    # ----- actions ----------------------------------------------------------------------------------------
    def onTestConnection(self) -> None:
        """Ask the server for its engine version and devices in a background thread (at most 10 s); the timer
        shows the answer, so a slow or hung server never freezes Slicer."""
        engine = self._engine()
        if not engine.remote:
            self._connectionCheck = None
            self.ui.serverInfoLabel.text = _("Jobs run on this computer.")
            return
        self._connectionCheck = BackgroundCall(lambda: engine.connection.json("GET", "/v1/info", timeout_s=10))
        self.ui.serverInfoLabel.text = _("Connecting to {url} ...").format(url=self.parameters.serverUrl)

    def _showConnectionCheck(self) -> None:
        """The answer of the last Test connection, once it arrived (called by the timer)."""
        check = self._connectionCheck
        if check is None or not check.done:
            return
        self._connectionCheck = None
        if check.error is not None:
            self.ui.serverInfoLabel.text = _("Could not connect: {error}").format(error=check.error)
            return
        info = check.result
        devices = ", ".join(d["name"] + (f" ({d['free_mb'] / 1024:.0f} of {d['total_mb'] / 1024:.0f} GiB free)"
                                         if "free_mb" in d else "") for d in info["devices"])
        self.ui.serverInfoLabel.text = _("Connected: AutoSegNet {version} as {client}; {devices}; {queued} job(s) "
                                         "queued.").format(version=info["engine_version"], client=info["client"],
                                                           devices=devices, queued=info["queue"]["queued"])

    def onInstall(self) -> None:
        self.workflow.install_dependencies(confirm=slicer.util.confirmOkCancelDisplay)
        self.ui.dependencyLabel.text = self.workflow.dependency_report()

    @staticmethod
    def _channels(volumeSelector, extraSelector) -> list:
        """The selected volume (first channel) and the ticked extra channels, in the list's order."""
        if volumeSelector.currentNode() is None:
            raise ValueError(_("Select a volume first."))
        return [volumeSelector.currentNode(), *extraSelector.checkedNodes()]

    @staticmethod
    def _clearTicks(extraSelector) -> None:
        for node in extraSelector.checkedNodes():
            extraSelector.setCheckState(node, qt.Qt.Unchecked)

    def onAddCase(self) -> None:
        channels = self._channels(self.ui.caseVolumeSelector, self.ui.caseExtraChannelsSelector)
        self.workflow.training_set().add_case(channels, self.ui.caseLabelsSelector.currentNode())
        self._clearTicks(self.ui.caseExtraChannelsSelector)  # the next case has its own extra channels
        self.refreshCases()

    def onAddCorrected(self) -> None:
        channels = self._channels(self.ui.segmentVolumeSelector, self.ui.segmentExtraChannelsSelector)
        self.workflow.training_set().add_case(channels, self.ui.resultSegmentationSelector.currentNode(), True)
        self._clearTicks(self.ui.segmentExtraChannelsSelector)
        self.refreshCases()

    def onRemoveCase(self) -> None:
        cases = self.workflow.training_set().cases()
        row = self.ui.casesTable.currentRow()
        if 0 <= row < len(cases):
            self.workflow.training_set().remove_case(cases[row].volume)
        self.refreshCases()

    def onRenameLabel(self) -> None:
        self.workflow.training_set().rename_label(self.ui.labelsComboBox.currentText, self.ui.newLabelNameEdit.text)
        self.refreshCases()

    def onExport(self) -> None:
        self._engine()
        self.workflow.start_export(self.logic.datasetSettings(self.parameters))
        self.ui.exportReportText.plainText = _("Exporting the training set, then checking it (verify)...")
        self._followInProcessWork()

    def onTrain(self, resume: bool = False) -> None:
        p = self.parameters
        self._engine()
        self.workflow.start_training(self.logic.datasetSettings(p), self.logic.trainingSettings(p), resume=resume)
        self._followInProcessWork()

    def onResume(self) -> None:
        self.onTrain(resume=True)

    def onStop(self) -> None:
        self.workflow.stop("train")
        self.workflow.stop("export")

    def onStopSegment(self) -> None:
        self.workflow.stop("segment")
        self.workflow.stop("install")  # also a catalogue download: it keeps its partial file and resumes

    def onRetrain(self) -> None:
        p = self.parameters
        training = self.logic.trainingSettings(p, epochs=p.retrainEpochs)
        self._engine()
        self.workflow.start_retraining(self.logic.datasetSettings(p), training, self._selectedModel())
        self._followInProcessWork()

    def onSegment(self) -> None:
        p = self.parameters
        channels = self._channels(self.ui.segmentVolumeSelector, self.ui.segmentExtraChannelsSelector)
        self._engine()
        self.workflow.start_segmentation(p.workspace, channels, self._selectedModel(), p.fastPreview,
                                         p.saveUncertainty, p.device)

    def onInstallModel(self) -> None:
        self._engine()
        self.workflow.start_model_install(self.parameters.workspace, self.parameters.modelZip)

    def onInstallCatalogueModel(self) -> None:
        index = self.ui.catalogueComboBox.currentIndex
        if not 0 <= index < len(self._catalogue):
            raise ValueError(_("The catalogue has no model to install yet; install a model zip instead."))
        self._engine()
        self.workflow.start_catalogue_install(self.parameters.workspace, self._catalogue[index].name)

    def refreshCatalogue(self) -> None:
        """List the catalogue's models (name, labels, licence); a broken index is logged, not fatal."""
        try:
            self._catalogue = self.workflow.catalogue()
        except Exception as exc:  # the module must open even if the index cannot be read
            log.warning("Cannot read the model catalogue: %s", exc)
            self._catalogue = []
        self.ui.catalogueComboBox.clear()
        for entry in self._catalogue:
            labels = ", ".join(name for name in entry.labels if name != "background")
            self.ui.catalogueComboBox.addItem(f"{entry.name} · {labels} · {entry.licence}")
        self.ui.installCatalogueButton.enabled = bool(self._catalogue)

    def onShowChart(self) -> None:
        chart = self.workflow.update_chart(open_chart=True)
        slicer.modules.plots.logic().ShowChartInLayout(chart)

    def _selectedModel(self):
        index = self.ui.modelComboBox.currentIndex
        if not 0 <= index < len(self._models):
            raise ValueError(_("Choose a model first (train one, or install one from a zip)."))
        return self._models[index]

    def _reattach(self) -> None:
        try:
            self._engine()
            jobs = self.workflow.reattach(self.logic.datasetSettings(self.parameters))
        except Exception as exc:  # e.g. no workspace chosen yet: nothing to re-attach to
            log.info("No jobs to re-attach to: %s", exc)
            return
        if jobs:
            self.ui.trainingStatusLabel.text = _("Re-attached to {n} job(s).").format(n=len(jobs))

    # ----- views ------------------------------------------------------------------------------------------
    def refreshCases(self) -> None:
        trainingSet = self.workflow.training_set()
        cases = trainingSet.cases()
        self.ui.casesTable.setRowCount(len(cases))
        for row, case in enumerate(cases):
            cells = [case.name, case.volume.GetName(), case.label_node.GetName(), ", ".join(case.segment_names),
                     case.status]
            for column, text in enumerate(cells):
                self.ui.casesTable.setItem(row, column, qt.QTableWidgetItem(text))
        labels = trainingSet.labels
        self.ui.labelsComboBox.clear()
        for name in labels.names():
            self.ui.labelsComboBox.addItem(name)
        self.ui.labelsLabel.text = ", ".join(f"{n} = {v}" for n, v in labels.as_dict().items()) or _("none yet")

    def refreshModels(self) -> None:
        if self.parameters is not None:
            self._engine()
            self._models = self.workflow.models(self.parameters.workspace)
            self._modelsGeneration = self.workflow.models_generation
            self.ui.modelComboBox.clear()
            for model in self._models:
                self.ui.modelComboBox.addItem(model.display_name())
            self.ui.modelComboBox.currentIndex = len(self._models) - 1

    def onTimer(self) -> None:
        self._showConnectionCheck()
        finished = self.workflow.poll()
        for kind, label, bar in (("train", self.ui.trainingStatusLabel, self.ui.trainingProgressBar),
                                 ("segment", self.ui.segmentStatusLabel, self.ui.segmentProgressBar)):
            job = self.workflow.jobs.get(kind)
            if job is not None:
                label.text = job.state.describe()
                bar.value = int(100 * (job.state.fraction or 0))
        self.workflow.update_chart()
        export = self.workflow.jobs.get("export")
        if export is not None and export in finished:
            self.ui.exportReportText.plainText = self.workflow.export_summary(export)
        self._followInProcessWork()
        newResult = self.workflow.take_new_segmentation()
        if newResult is not None:
            self.ui.resultSegmentationSelector.setCurrentNode(newResult)
        if finished:
            self.refreshModels()
            self.refreshCases()
        elif self._modelsGeneration != self.workflow.models_generation:  # a server's model list arrived
            self.refreshModels()
