"""One web session: trame-slicer's segmentation app, its scene, and a :class:`Workflow` over that scene.

Everything here runs on the trame server's event-loop thread (button handlers and the progress timer), so the
scene is never touched from two threads. Nothing here blocks: jobs run in engine processes, followed by
:meth:`WebSession.poll`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetSceneLib.settings import DatasetSettings, TrainingSettings
from AutoSegNetSceneLib.workflow import Workflow
from trame_slicer.app.segmentation_app import SegmentationApp
from trame_slicer.segmentation import SegmentationEffectPaint

from AutoSegNetLib.errors import AutoSegNetError

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
    """The web UI's model: load volumes, paint, add cases, train and stop, follow progress."""

    def __init__(self, server, workspace: Path, dataset_name: str = "WebCases") -> None:
        self.app = SegmentationApp(server=server)
        self.slicer_app = self.app._slicer_app  # trame-slicer keeps these private; 2.0.0 has no public accessor
        self.logic = self.app._logic
        self.scene = self.slicer_app.scene
        self.workflow = Workflow(self.scene)
        self.dataset = DatasetSettings(workspace_root=workspace, dataset_name=dataset_name, channel_names=("image",))
        self.volume = None
        self.rebound = 0

    @property
    def editor(self):
        return self.slicer_app.segmentation_editor

    def load_volume(self, path: str) -> str:
        """Load an image file from the server's disk, show it, give it an empty segmentation with one segment,
        and activate Paint. Returns the volume node's name."""
        file = Path(path.strip()).expanduser()
        if not file.is_file():
            raise AutoSegNetError(f"No image file at {file} (a path on the server, e.g. a .nii.gz or .nrrd file).")
        loaded = self.slicer_app.io_manager.load_volumes(str(file))
        if not loaded:
            raise AutoSegNetError(f"{file} could not be read as a volume.")
        had_segmentation = self.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode") is not None
        self.volume = loaded[0]
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

    def start_training(self, epochs: int, iterations: int | None = None, device: str = "cpu") -> None:
        """Export the cases, plan, preprocess and train in the background (never waits)."""
        training = TrainingSettings(epochs=epochs, device=device, iterations_per_epoch=iterations)
        self.workflow.start_training(self.dataset, training)

    def stop(self) -> None:
        self.workflow.stop("train")

    def poll(self) -> tuple[JobView, bool]:
        """Advance the jobs (the page's timer calls this); the training job's view, and whether a job ended
        (case statuses may have changed then)."""
        finished = self.workflow.poll()
        return describe_training(self.workflow.jobs.get("train")), bool(finished)


def describe_training(job) -> JobView:
    """The training job's stage, epoch, loss and message as one line (``No training yet`` without a job)."""
    if job is None:
        return JobView("No training yet.", None, False)
    state = job.state
    parts = [state.status, state.stage]
    if state.epoch is not None:
        parts.append(f"epoch {state.epoch}/{state.epochs}" if state.epochs else f"epoch {state.epoch}")
    if state.train_loss is not None:
        parts.append(f"loss {state.train_loss:.4f}")
    if state.message:
        parts.append(state.message)
    return JobView(" | ".join(p for p in parts if p), state.fraction, job.running)
