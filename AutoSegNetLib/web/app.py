"""One web session: trame-slicer's segmentation app, its scene, and a :class:`Workflow` over that scene.

Everything here runs on the trame server's event-loop thread (button handlers and the progress timer), so the
scene is never touched from two threads. Nothing here blocks: jobs run in engine processes, followed by
:meth:`WebSession.poll`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetSceneLib.curves import curve_columns
from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
from AutoSegNetSceneLib.workflow import Workflow
from trame.app.file_upload import ClientFile
from trame_slicer.app.segmentation_app import SegmentationApp
from trame_slicer.segmentation import SegmentationEffectPaint

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.utils.atomic import atomic_path
from AutoSegNetLib.web.curves import training_charts
from AutoSegNetLib.web.downloads import downloads_folder, safe_name, write_segmentation
from AutoSegNetLib.web.overlay import show_overlay

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobView:
    """What the page shows of the training job: a line of text and a fraction in [0, 1] (None: unknown)."""

    text: str
    fraction: float | None
    running: bool


def rebind_effect_views(slicer_app) -> int:
    """Work around trame-slicer 2.0.0: give effect pipelines made before their view existed that view.

    The effect parameter nodes enter the scene before the layout creates the views, so the layer displayable
    manager creates each view's pipeline before the view factory registered the view and
    ``SegmentationEditor._try_create_effect_pipeline`` calls ``SetView(None)``; activating Paint then fails with
    ``'NoneType' object has no attribute 'paint_interaction_stopped'`` (docs/decisions/0021). Remove this once
    upstream fixes it (the web test checks the count). Returns how many pipelines were rebound.
    """
    fixed = 0
    for effect in slicer_app.segmentation_editor._effects.values():
        for weak in effect._pipelines:
            pipeline = weak()
            if pipeline is not None and pipeline._view is None and pipeline.GetViewNode() is not None:
                pipeline.SetView(slicer_app.view_manager.get_view(pipeline.GetViewNode()))
                fixed += 1
    return fixed


class WebSession:
    """The web UI's model: load, paint, add cases, train/stop/resume, segment, correct, retrain, download."""

    def __init__(self, server, workspace: Path, dataset_name: str = "WebCases") -> None:
        self.app = SegmentationApp(server=server)
        self.slicer_app = self.app._slicer_app  # trame-slicer keeps these private; 2.0.0 has no public accessor
        self.logic = self.app._logic
        self.scene = self.slicer_app.scene
        self.workflow = Workflow(self.scene)
        self.dataset = DatasetSettings(workspace_root=workspace, dataset_name=dataset_name, channel_names=("image",))
        self.volume = None
        self.rebound = 0
        self.overlay_shown = False  # an uncertainty map is shown over the image
        self._charts: tuple[tuple, list[dict]] = ((), [])  # (job, epochs) the charts were built for, the charts

    @property
    def editor(self):
        return self.slicer_app.segmentation_editor

    def load_volume(self, path: str) -> str:
        """Load an image file from the server's disk, show it, give it an empty segmentation with one segment,
        and activate Paint. Returns the volume node's name."""
        file = Path(path.strip()).expanduser()
        if not file.is_file():
            raise AutoSegNetError(f"No image file at {file} (a path on the server, e.g. a .nii.gz or .nrrd file).")
        return self._show_loaded([file])

    def upload(self, files: list[dict]) -> str:
        """Files sent by the browser (trame-slicer's upload buttons): kept in ``<workspace>/uploads/<time>/``, then
        loaded as :meth:`load_volume` does (the largest volume is shown). Unlike trame-slicer's own handler this
        keeps the scene, so the training cases stay. Returns the shown volume's name."""
        folder = Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"),
                                       dir=self._folder("uploads")))
        written = []
        for sent in files:
            client = ClientFile(sent)
            if client.is_empty:
                continue
            target = folder / safe_name(Path(client.name or "upload").name)
            with atomic_path(target, suffix=".part") as temporary:
                temporary.write_bytes(client.content)
            written.append(target)
        if any(path.suffix.lower() == ".mrb" for path in written):
            raise AutoSegNetError("Scene files (.mrb) are not loaded here: upload the image files (e.g. .nii.gz).")
        if not written:
            raise AutoSegNetError("The upload was empty: choose one or more image files.")
        return self._show_loaded(written)

    def _folder(self, name: str) -> Path:
        folder = Path(self.dataset.workspace_root) / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _show_loaded(self, files: list[Path]) -> str:
        loaded = self.slicer_app.io_manager.load_volumes([str(f) for f in files])
        if not loaded:
            raise AutoSegNetError(f"{', '.join(f.name for f in files)} could not be read as a volume.")
        loaded = sorted(loaded, key=lambda node: _voxels(node))
        had_segmentation = self.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode") is not None
        self.volume = loaded[-1]
        self.slicer_app.display_manager.show_volume(self.volume, do_reset_views=True)
        self.logic._load_files_logic.volume_loaded(self.volume)  # what trame-slicer's upload does next
        if had_segmentation:  # trame-slicer reuses the first segmentation; each case needs its own
            self.editor.deactivate_effect()
            self.editor.set_active_segmentation(self.editor.create_empty_segmentation_node(), self.volume)
        if self.editor.n_segments == 0:
            self.editor.add_empty_segment()
        self.rebound += rebind_effect_views(self.slicer_app)
        self.editor.set_active_effect_type(SegmentationEffectPaint)
        return self.volume.GetName()

    def painted_voxels(self) -> int:
        """Voxels of the active segment (0 when there is none)."""
        segment_id = self.editor.get_active_segment_id()
        if not segment_id:
            return 0
        labelmap = self.editor.get_segment_labelmap(segment_id, as_numpy_array=True)
        return 0 if labelmap is None else int((labelmap > 0).sum())

    def add_case(self) -> str:
        """The shown volume + its segmentation become a training case; returns the case name."""
        if self.volume is None:
            raise AutoSegNetError("Load a volume first (a file path on the server).")
        case = self.workflow.training_set().add_case([self.volume], self.editor.active_segmentation_node)
        return case.name

    def cases(self) -> list[dict]:
        """The training cases for the table: name, volume, status, segments."""
        return [{"name": c.name, "volume": c.volume.GetName(), "status": c.status,
                 "segments": ", ".join(c.segment_names)} for c in self.workflow.training_set().cases()]

    def add_corrected_case(self) -> str:
        """The shown volume + its (segmented, then corrected) segmentation become a *corrected* training case."""
        if self.volume is None:
            raise AutoSegNetError("Load a volume and segment it first.")
        node = self.editor.active_segmentation_node
        case = self.workflow.training_set().add_case([self.volume], node, corrected=True)
        return case.name

    # ----- training ---------------------------------------------------------------------------------------
    def start_training(self, schedule: dict, resume: bool = False) -> None:
        """Export the cases, plan, preprocess and train in the background (never waits); ``resume`` continues
        the stopped training from its latest checkpoint instead. ``schedule``: :class:`TrainingSettings` fields
        (configuration, fold, epochs, iterations_per_epoch, time_budget_minutes, device, amp)."""
        self.workflow.start_training(self.dataset, TrainingSettings(**schedule), resume=resume)

    def start_retraining(self, schedule: dict) -> str:
        """Fine-tune the newest version of this dataset on all cases (the corrected ones included), in its
        configuration; returns the version it starts from."""
        model = self.latest_version()
        self.workflow.start_retraining(self.dataset, TrainingSettings(**schedule), model)
        return model.version

    def stop(self) -> None:
        self.workflow.stop("train")
        self.workflow.stop("export")

    # ----- models, segmentation, downloads ----------------------------------------------------------------
    def models(self) -> list:
        """The workspace's models (trained, versioned, installed), oldest first."""
        return self.workflow.models(self.dataset.workspace_root)

    def latest_version(self):
        """The newest saved version of this page's dataset; a clear error when there is none yet."""
        found = [m for m in self.models() if m.version and m.dataset == self.dataset.folder_name]
        if not found:
            raise AutoSegNetError("No model version yet: train first (a finished training is saved as v001).")
        return found[-1]

    def segment(self, model_folder: str | None, uncertainty: bool = False, tta: bool = False,
                device: str = "auto") -> str:
        """Segment the shown volume with the model in ``model_folder`` (one of :meth:`models`), in the
        background; returns the model's display name."""
        if self.volume is None:
            raise AutoSegNetError("Load a volume to segment first.")
        model = next((m for m in self.models() if str(m.folder) == str(model_folder)), None)
        if model is None:
            raise AutoSegNetError("Choose a model first (train one, or install a model zip).")
        self.workflow.start_segmentation(self.dataset.workspace_root, [self.volume], model,
                                         fast_preview=not tta, save_uncertainty=uncertainty, device=device)
        return model.display_name()

    def take_segmentation(self) -> list[str] | None:
        """After a segment job: show its segmentation on the volume and make it the one the editor corrects;
        returns its segment names (None when no new segmentation arrived)."""
        node = self.workflow.take_new_segmentation()
        if node is None:
            return None
        self.editor.deactivate_effect()
        self.editor.set_active_segmentation(node, self.volume)
        self.rebound += rebind_effect_views(self.slicer_app)
        self.editor.set_active_effect_type(SegmentationEffectPaint)
        self.overlay_shown = show_overlay(self.scene, self.workflow.last_uncertainty)
        return self.segment_names()

    def segment_names(self) -> list[str]:
        """The label names of the shown segmentation's segments, in segment order."""
        return self.workflow.training_set().segment_names(self.editor.active_segmentation_node)

    def download_segmentation(self, file_format: str) -> Path:
        """Write the shown segmentation (as corrected so far) into ``<workspace>/downloads``; returns the file."""
        if self.volume is None or self.editor.active_segmentation_node is None:
            raise AutoSegNetError("Load a volume and paint or segment it first.")
        return write_segmentation(self.workflow.training_set(), self.volume, self.editor.active_segmentation_node,
                                  self.dataset.workspace_root, file_format)

    def export_model(self, model_folder: str | None) -> Path:
        """Zip the model in ``model_folder`` (one of :meth:`models`, e.g. a version) into ``<workspace>/downloads``,
        in the background; returns the zip it will write."""
        model = next((m for m in self.models() if str(m.folder) == str(model_folder)), None)
        if model is None:
            raise AutoSegNetError("Choose a model to download first (train one, or install a model zip).")
        name = f"{model.dataset}_{model.configuration}_{model.version or Path(model.folder).name}.zip"
        output = downloads_folder(self.dataset.workspace_root) / safe_name(name)
        self.workflow.start_model_export(self.dataset.workspace_root, model, output)
        return output

    # ----- following ---------------------------------------------------------------------------------------
    def reattach(self) -> int:
        """After a restart of the web server: follow this workspace's running jobs again; returns how many."""
        return len(self.workflow.reattach(self.dataset))

    def poll(self) -> tuple[dict[str, JobView], bool]:
        """Advance the jobs (the page's timer calls this); a view of each job by kind, and whether a job ended
        (case statuses and models may have changed then)."""
        finished = self.workflow.poll()
        views = {kind: describe_job(self.workflow.jobs.get(kind)) for kind in ("train", "segment", "zip")}
        return views, bool(finished)

    def curves(self) -> list[dict]:
        """The training job's loss and pseudo-Dice charts (see :mod:`.curves`); rebuilt only when the job
        reported a new epoch (reading the label names touches the scene)."""
        job = self.workflow.jobs.get("train")
        if job is None or not job.state.history:
            return []
        key = (id(job), len(job.state.history))
        if self._charts[0] != key:
            names = {v: n for n, v in self.workflow.training_set().labels.as_dict().items()}
            self._charts = (key, training_charts(curve_columns(job.state.history, names)))
        return self._charts[1]


def _voxels(volume) -> int:
    dims = volume.GetImageData().GetDimensions() if volume.GetImageData() is not None else (0, 0, 0)
    return dims[0] * dims[1] * dims[2]


def describe_job(job) -> JobView:
    """A job's status, stage, epoch, loss and message as one line (``No job yet.`` without a job)."""
    if job is None:
        return JobView("No job yet.", None, False)
    state = job.state
    parts = [state.status, state.stage]
    if state.epoch is not None:
        parts.append(f"epoch {state.epoch}/{state.epochs}" if state.epochs else f"epoch {state.epoch}")
    if state.train_loss is not None:
        parts.append(f"loss {state.train_loss:.4f}")
    if state.message:
        parts.append(state.message)
    return JobView(" | ".join(p for p in parts if p), state.fraction, job.running)
