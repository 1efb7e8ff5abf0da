"""The annotate-correct-retrain loop as one plain object: background jobs, model versions, re-attach.

:class:`Workflow` is what the module's panel (and a script, a notebook, the self-test) drives. It starts jobs
(export = stage + import + verify; train = export + plan/preprocess + train; segment; install a model), follows
them in :meth:`poll` -- the function the panel's timer calls, which never waits -- and brings finished results
into the scene. Nothing here touches Qt.

Scene lifetime: a prediction is imported only while the very volume node it segments is still in the scene;
after *Close scene* the jobs keep running but their results are not imported (the files stay on disk).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import slicer

from AutoSegNetLib.jobs.engine_job import EngineJob, find_status_files
from AutoSegNetLib.layout import checkpoint_path
from AutoSegNetLib.models import versions
from AutoSegNetSceneLib import commands, install, segment
from AutoSegNetSceneLib.cases import TrainingSet
from AutoSegNetSceneLib.engines import LocalEngine
from AutoSegNetSceneLib.job_chain import JobChain, JobStep
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings

log = logging.getLogger(__name__)

KINDS = ("export", "train", "segment", "install", "zip")


class Workflow:
    """Jobs by kind (``export``, ``train``, ``segment``, ``install``) over one MRML scene.

    An export (also the first steps of a training) is staged on the polling thread, one short step at a time,
    then written by the engine in the background (``import-staged``); see :mod:`AutoSegNetSceneLib.staging`.
    """

    def __init__(self, scene: slicer.vtkMRMLScene, requirements: Path | None = None, engine=None) -> None:
        self.scene = scene
        self.requirements = requirements
        self.engine = engine or LocalEngine()  # where jobs run: this computer or a server (engines.py)
        self.engine_key: tuple = ("this computer",)  # what the module's settings said when the engine was made
        self.jobs: dict[str, EngineJob | JobChain] = {}
        self.chart_open = False
        self._chart_shown: tuple[int, int] | None = None  # (job, epochs) the chart last showed
        self.last_export = None
        self.last_segmentation = None
        self.last_uncertainty = None
        self._new_segmentation = None

    def set_engine(self, engine, key: tuple = ()) -> None:
        """Run the next jobs with ``engine`` (:class:`~AutoSegNetSceneLib.engines.LocalEngine` or ``RemoteEngine``)."""
        if any(job.running for job in self.jobs.values()) and engine.description != self.engine.description:
            raise RuntimeError("Jobs are still running; stop them or wait before switching the engine.")
        self.engine, self.engine_key = engine, key

    # ----- training set --------------------------------------------------------------------------------
    def training_set(self) -> TrainingSet:
        return TrainingSet(self.scene)

    def export(self, dataset: DatasetSettings):
        """Write the raw dataset now, in this process (scripts; the panel uses :meth:`start_export`)."""
        from AutoSegNetSceneLib.export import export_training_set

        return export_training_set(self.training_set(), dataset)

    # ----- starting jobs -----------------------------------------------------------------------------------
    def start_export(self, dataset: DatasetSettings) -> JobChain:
        """Stage the cases on this thread (step by step, from :meth:`poll`), then write the raw dataset and check
        it in the background (``import-staged``, ``verify``). The chain's meta holds the verify report path."""
        self.check_dependencies()
        self._refuse_if_running("export", "train")
        report = dataset.workspace_root / "jobs" / f"verify-{dataset.folder_name}.json"
        steps = [*self._export_steps(dataset), JobStep("verify", commands.verify(dataset, report)),
                 *self.engine.fetch_steps(dataset.workspace_root, [report])]
        report.unlink(missing_ok=True)
        return self._keep("export", self._chain(steps, dataset.workspace_root, "export", {"report": str(report)}))

    def _export_steps(self, dataset: DatasetSettings) -> list[JobStep]:
        """Staging (in process) and ``import-staged`` (engine); marks the cases exported when it is done."""
        from AutoSegNetSceneLib.export import apply_export_report, load_export_report
        from AutoSegNetSceneLib.staging import StagedExport
        from AutoSegNetSceneLib.staging_job import StagingJob

        staging = StagedExport(self.training_set(), dataset)  # refuses at once when there is no case
        self.last_export = None  # a failed export must not show the report of an earlier one
        report = dataset.workspace_root / "jobs" / f"export-{dataset.folder_name}.json"
        report.unlink(missing_ok=True)

        def imported(job) -> None:
            self.last_export = load_export_report(report)
            apply_export_report(self.training_set(), self.last_export)

        return [JobStep("stage", start=lambda: StagingJob(staging)),
                JobStep("export", lambda: commands.import_staged(dataset, staging.result.staging_folder, report),
                        after=imported, local=True),
                *self.engine.upload_dataset_steps(dataset)]

    def export_summary(self, job) -> str:
        """What the last export wrote and what ``verify`` found, for the export report box."""
        lines = [self.last_export.summary()] if self.last_export is not None else []
        if job.state.status == "finished" or (job.meta.get("report") and Path(job.meta["report"]).is_file()):
            lines.append(self.verify_summary(job))
        else:
            lines.append(f"Export {job.state.status}: {job.state.message}")
        return "\n".join(lines)

    def resolve_configuration(self, configuration: str) -> str:
        """``auto``: 2d when a training volume has a single slice, else 3d_fullres."""
        if configuration != "auto":
            return configuration
        from AutoSegNetSceneLib.volumes import dimensions_zyx

        flat = any(dimensions_zyx(case.volume)[0] == 1 for case in self.training_set().cases())
        return "2d" if flat else "3d_fullres"

    def start_training(self, dataset: DatasetSettings, training: TrainingSettings, resume: bool = False,
                       pretrained: Path | None = None) -> JobChain:
        """Export, plan and preprocess (only preprocess when fine-tuning), then train; in the background."""
        self.check_dependencies()
        self._refuse_if_running("train", "export")
        configuration = self.resolve_configuration(training.configuration)
        steps = []
        if pretrained is not None:  # empty the working fold (a training there no version holds is saved first)
            steps.append(JobStep("prepare", commands.prepare_finetuning(dataset, configuration, training.fold)))
        if not resume:
            steps += self._export_steps(dataset)
            prepare = commands.preprocess if pretrained else commands.plan_and_preprocess
            steps.append(JobStep("preprocess", prepare(dataset, configuration)))
        steps.append(JobStep("train", commands.train(dataset, training, configuration, resume, pretrained)))
        steps.append(JobStep("version", commands.save_version(dataset.workspace_root, dataset.folder_name,
                                                              configuration, pretrained)))
        meta = {"dataset": dataset.folder_name, "configuration": configuration, "fold": training.fold,
                "workspace": str(dataset.workspace_root), "pretrained": str(pretrained) if pretrained else None}
        return self._keep("train", self._chain(steps, dataset.workspace_root, "train", meta))

    def start_retraining(self, dataset: DatasetSettings, training: TrainingSettings,
                         from_model: versions.ModelInfo) -> JobChain:
        """Fine-tune from ``from_model`` (e.g. the latest version) with the current cases."""
        configuration = from_model.configuration
        fold = training.fold if training.fold in from_model.folds else from_model.folds[0]
        training = replace(training, configuration=configuration, fold=fold)
        pretrained = checkpoint_path(from_model.folder, fold, versions.CHECKPOINT_KIND)
        return self.start_training(dataset, training, pretrained=pretrained)

    def start_segmentation(self, workspace_root: Path, channel_volumes: list, model: versions.ModelInfo,
                           fast_preview: bool = True, save_uncertainty: bool = False, device: str = "auto",
                           output_node=None) -> JobChain:
        """Predict ``channel_volumes`` with ``model`` in the background; the result lands in a segmentation node."""
        self.check_dependencies()
        self._refuse_if_running("segment")
        if len(channel_volumes) != len(model.channel_names):
            raise ValueError(f"The model takes {len(model.channel_names)} channel(s) "
                             f"({', '.join(model.channel_names)}); select one volume per channel.")
        jobs_root = Path(workspace_root) / "jobs"
        jobs_root.mkdir(parents=True, exist_ok=True)
        folders = segment.PredictionFolders(Path(tempfile.mkdtemp(prefix="prediction-", dir=jobs_root)))
        segment.write_prediction_input(channel_volumes, folders)
        folds = model.folds[:1] if fast_preview else model.folds
        args = commands.predict(workspace_root, folders.input, folders.output, model.folder, folds,
                                tta=not fast_preview, save_uncertainty=save_uncertainty, device=device)
        meta = {"model": str(model.folder), "folds": list(folds), "prediction": str(folders.root),
                "volume": channel_volumes[0].GetID(),
                "output": output_node.GetID() if output_node is not None else None}
        job = self._chain(self.engine.prediction_steps(workspace_root, folders, args, meta), workspace_root,
                          "segment", meta)
        self._follow_segmentation(job)
        return self._keep("segment", job)

    def start_model_install(self, workspace_root: Path, zip_file: Path) -> JobChain:
        if not Path(zip_file).is_file():
            raise ValueError(f"Choose the model zip file to install (it was not found: {zip_file}).")
        steps = self.engine.install_steps(workspace_root, Path(zip_file), commands.install_model)
        return self._keep("install", self._chain(steps, workspace_root, "install"))

    def start_model_export(self, workspace_root: Path, model: versions.ModelInfo, output: Path) -> JobChain:
        """Zip ``model`` (a version, a trained or an installed model) with its folds, in the background (kind
        ``zip``); ``autosegnet install-model`` and the module's Install take the zip."""
        self._refuse_if_running("zip")
        args = commands.export_model(workspace_root, Path(model.folder), Path(output), model.folds)
        return self._keep("zip", self._chain([JobStep("zip", args)], workspace_root, "zip"))

    def start_catalogue_install(self, workspace_root: Path, name: str, index: str | None = None) -> JobChain:
        """Download and install the catalogue model ``name`` in the background (kind ``install``)."""
        self._refuse_if_running("install")
        args = commands.install_catalogue_model(workspace_root, name, index)
        return self._keep("install", self._chain([JobStep("install", args)], workspace_root, "install"))

    @staticmethod
    def catalogue(index: str | None = None) -> list:
        """The pretrained models of the catalogue (``autosegnet models list``; default: the one shipped with the
        engine); cheap, no torch."""
        from AutoSegNetLib.models.catalogue import load_index

        return list(load_index(index).entries)

    # ----- following -------------------------------------------------------------------------------------
    def poll(self) -> list:
        """Advance every job (the widget's timer calls this); returns those that finished during this call."""
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

    def take_new_segmentation(self):
        """The segmentation node a segment job imported since the last call (else None), to select it once."""
        node, self._new_segmentation = self._new_segmentation, None
        return node

    def stop(self, kind: str = "train") -> None:
        """Ask the ``kind`` job to stop cleanly (a training saves ``checkpoint_latest``); returns at once."""
        job = self.jobs.get(kind)
        if job is not None and job.running:
            job.stop()

    @property
    def working_in_process(self) -> bool:
        """True while a job does its work inside :meth:`poll` (staging an export): poll often then."""
        return any(getattr(job, "in_process", False) for job in self.jobs.values())

    def running(self, kind: str) -> bool:
        job = self.jobs.get(kind)
        return job is not None and job.running

    def reattach(self, dataset: DatasetSettings) -> list:
        """After a restart: follow this workspace's running jobs, import predictions that finished meanwhile,
        and follow trainings of the dataset started elsewhere (through their fold's ``status.json``)."""
        found = []
        for job in self.engine.find_jobs(dataset.workspace_root / "jobs"):
            if job.kind == "segment" and Path(job.meta.get("prediction") or "/nonexistent").is_dir():
                job = self.engine.follow_prediction(job, dataset.workspace_root,
                                                    segment.PredictionFolders(Path(job.meta["prediction"])))
                self._follow_segmentation(job)
                if not job.running:
                    self._import_segmentation(job, self.scene.GetNodeByID(job.meta.get("volume") or ""))
            elif not job.running or job.kind in self.jobs:
                continue
            elif job.kind == "train" and job.meta.get("step") == "train":
                job = self._then_save_version(job)
            self.jobs.setdefault(job.kind, job)
            found.append(job)
        if "train" not in self.jobs and not self.engine.remote:
            for status in find_status_files(dataset.workspace.results / dataset.folder_name)[:1]:
                found.append(self._keep("train", EngineJob.from_status_file(status)))
        return found

    def update_chart(self, open_chart: bool = False):
        """Refresh the loss/Dice chart; creates its nodes only once the user opened it (``open_chart``), and
        rebuilds them (from the timer) only when a new epoch was reported. Returns the chart node, or None."""
        from AutoSegNetSceneLib.curves import update_training_chart

        self.chart_open = self.chart_open or open_chart
        job = self.jobs.get("train")
        history = job.state.history if job is not None else []
        shown = (id(job), len(history))
        if not self.chart_open or (shown == self._chart_shown and not open_chart):
            return None
        self._chart_shown = shown
        names = {v: n for n, v in self.training_set().labels.as_dict().items()}
        return update_training_chart(self.scene, history, names)

    def models(self, workspace_root: Path) -> list[versions.ModelInfo]:
        """Trained, versioned and installed models of the engine's workspace (oldest first); never waits (a
        server's list is refreshed in the background: see :attr:`models_generation`)."""
        return self.engine.models(Path(workspace_root))

    @property
    def models_generation(self) -> int:
        """Changes whenever the engine learnt of new models (a server's list arrived): list them again then."""
        return self.engine.models_generation

    def dependency_report(self) -> str:
        return install.dependency_report(self.requirements)

    def install_dependencies(self, confirm) -> bool:
        """Install what is missing after ``confirm(text)`` returned True; True when all is installed."""
        return install.install_dependencies(self.requirements, confirm)

    @staticmethod
    def verify_summary(job: EngineJob) -> str:
        """The verify job's findings in a few lines, for the export report box."""
        from AutoSegNetSceneLib.export import verify_summary

        return verify_summary(Path(job.meta["report"]), job.state.status, job.state.message or job.log_tail(5))

    def check_dependencies(self) -> None:
        """Raise with what to do when the engine's packages are not installed (before starting a job)."""
        if self.requirements is None:
            return
        missing = install.missing_requirements(["torch", *install.read_requirements(self.requirements)])
        if missing:
            raise RuntimeError(f"AutoSegNet needs these Python packages, which are not installed: "
                               f"{', '.join(missing)}. Open the Setup section and click 'Install dependencies'.")

    # ----- internals -----------------------------------------------------------------------------------
    def _chain(self, steps: list[JobStep], workspace_root: Path, kind: str, meta: dict | None = None) -> JobChain:
        return JobChain(steps, Path(workspace_root) / "jobs", kind, meta=meta, launcher=self.engine.start).start()

    def _then_save_version(self, job) -> JobChain:
        """A training re-attached after a restart, followed by the version save its chain would have run."""
        meta = job.meta
        pretrained = Path(meta["pretrained"]) if meta.get("pretrained") else None
        save = commands.save_version(Path(meta["workspace"]), meta["dataset"], meta["configuration"], pretrained)
        steps = [JobStep("train", start=lambda: job), JobStep("version", save)]
        return self._chain(steps, Path(meta["workspace"]), "train", meta)

    def _keep(self, kind: str, job):
        self.jobs[kind] = job
        return job

    def _refuse_if_running(self, *kinds: str) -> None:
        for kind in kinds:
            if self.running(kind):
                raise RuntimeError(f"A {kind} job is still running; stop it or wait for it to finish.")

    def _follow_segmentation(self, job: EngineJob) -> None:
        volume = self.scene.GetNodeByID(job.meta.get("volume") or "")
        job.on_finished.append(lambda j: self._import_segmentation(j, volume))

    def _import_segmentation(self, job: EngineJob, volume) -> None:
        """Import the prediction on ``volume``'s grid, if that node (the same object) is still in the scene."""
        if job.state.status != "finished":
            return
        folders = segment.PredictionFolders(Path(job.meta["prediction"]))
        if volume is None or not self.scene.IsNodePresent(volume):
            _not_imported(job, "the volume it segments is no longer in the scene (was the scene closed?)")
            return
        output = self.scene.GetNodeByID(job.meta["output"]) if job.meta.get("output") else None
        model = versions.read_model(Path(job.meta["model"]), job.meta.get("folds"))  # a server's: no checkpoints
        try:
            result = segment.import_prediction_output(self.scene, folders, volume, model.labels,
                                                      segmentation_node=output)
        except Exception as exc:  # reported through the job, like an engine failure
            job.state.status, job.state.message = "failed", str(exc)
            return
        self.last_segmentation, self.last_uncertainty = result["segmentation"], result["uncertainty"]
        self._new_segmentation = self.last_segmentation
        shutil.rmtree(folders.root, ignore_errors=True)


def _not_imported(job: EngineJob, why: str) -> None:
    if job.state.status == "finished":
        job.state.message = f"not imported: {why} (the prediction is in {job.meta.get('prediction')})"
    log.warning("Prediction of job %s %s", job.folder.name, job.state.message)
