"""Final validation of a fold: predict its validation cases and write ``validation/summary.json``.

With the raw dataset at hand (the normal case) this is nnU-Net's validation: the inference stage's
:class:`~AutoSegNetLib.inference.Predictor` (sliding window, step 0.5, Gaussian weighting, mirroring) predicts
each raw validation case with ``checkpoint_final`` into ``fold_<k>/validation/<case><ending>`` with its
probabilities (what ``find-best``, ``ensemble`` and ``postprocess`` read), and the evaluation stage compares
them with the raw labels. Without raw images (only preprocessed data), the cases are predicted in the
preprocessed space by the same sliding window (the settings prediction takes from the model folder,
:func:`validation_window`, averaging logits as nnU-Net's validation does) and compared with the preprocessed labels
(voxels outside the crop count as background); the summary then says so in ``"space"``. Both tile with the patch the
model folder's plans.json records: the one the network was trained with, also after ``train --patch-size``.

Cascade. A low-resolution fold with a cascade stage after it (``setup.next_stage``) also stores each validation
case's prediction on that stage's grid (:mod:`AutoSegNetLib.training.cascade`): these cross-validation predictions
are the cascade's inputs in training. A cascade fold is validated like any other: with raw images the predictor
runs its ``3d_lowres`` stage on the same fold, which held these cases out; in the preprocessed space the stored
cross-validation predictions are its input channels, as in training.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from AutoSegNetLib.dataset.raw import Case, RawDataset
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import CasePair, LabelSet, evaluate_pairs, save_summary, summarise
from AutoSegNetLib.evaluation.metrics import case_metrics
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.inference.labels import probabilities_to_segmentation
from AutoSegNetLib.inference.model_folder import ModelFolder
from AutoSegNetLib.inference.sliding_window import SlidingWindowInferer, SlidingWindowSettings
from AutoSegNetLib.layout import SUMMARY_FILE, VALIDATION_FOLDER, checkpoint_file_name
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.training.cascade import (
    previous_stage_channels,
    warn_skipped,
    write_stage_prediction,
    write_stage_predictions_from_files,
)
from AutoSegNetLib.training.distributed import barrier, gather_values
from AutoSegNetLib.training.fold_setup import FoldSetup
from AutoSegNetLib.training.runtime import Runtime
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


class _CaseEvents(ProgressReporter):
    """Passes the predictor's per-case events on as ``validation_case`` and drops its ``done``."""

    def __init__(self, reporter: ProgressReporter) -> None:
        super().__init__(reporter.mode, reporter.stream, reporter.status_file)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event == "done":
            return {}
        fields.pop("stage", None)
        return super().emit("validation_case" if event == "case" else event, **fields)


def raw_validation_cases(workspace: Workspace, setup: FoldSetup) -> list[Case] | None:
    """The raw cases (images + label) of the fold's validation cases, or None if any is unavailable."""
    folder = workspace.raw / setup.dataset_name
    if not (folder / "imagesTr").is_dir():
        return None
    try:
        cases = {c.name: c for c in RawDataset.open(folder).training_cases() if c.label is not None}
    except AutoSegNetError as exc:
        log.warning("Raw dataset %s unusable for validation (%s); validating in the preprocessed space.", folder, exc)
        return None
    if not all(name in cases for name in setup.val_cases):
        return None
    return [cases[name] for name in setup.val_cases]


def validate_fold(setup: FoldSetup, workspace: Workspace, model: nn.Module, runtime: Runtime, mirror_axes: list[int],
                  reporter: ProgressReporter, rank: int = 0, world_size: int = 1) -> dict[str, Any] | None:
    """Predict and evaluate the fold's validation cases (shared across DDP ranks); rank 0 writes and returns
    the summary (other ranks return None)."""
    started = time.perf_counter()
    folder = setup.fold_folder / VALIDATION_FOLDER
    if rank == 0 and folder.is_dir():
        shutil.rmtree(folder)
    barrier()
    labels = LabelSet.from_dataset_json(setup.dataset_json)
    raw_cases = raw_validation_cases(workspace, setup)
    if raw_cases is not None:
        mine = raw_cases[rank::world_size]
        _predict_raw_cases(setup, mine, folder, runtime, reporter if rank == 0 else None)
        _write_next_stage_inputs(setup, mine, folder)
        barrier()
        if rank != 0:
            return None
        ending = setup.dataset_json.file_ending
        pairs = [CasePair(c.name, c.label, folder / f"{c.name}{ending}") for c in raw_cases]
        summary = {"space": "original", **evaluate_pairs(pairs, labels, distances=False)}
    else:
        inferer = SlidingWindowInferer(validation_window(setup, runtime, mirror_axes))
        mine = [_preprocessed_case_metrics(setup, name, model, inferer, labels)
                for name in setup.val_cases[rank::world_size]]
        if setup.next_stage is not None:
            skipped = [m["case"] for m in mine if not m.pop("next_stage_written")]
            warn_skipped(setup.next_stage, skipped, setup.dataset_name, setup.configuration, setup.fold)
        per_case = sorted((c for part in gather_values(mine) for c in part), key=lambda c: c["case"])
        if rank != 0:
            return None
        summary = {"space": "preprocessed", **summarise(per_case, labels)}
    summary = {"configuration": setup.configuration, "fold": setup.fold, "checkpoint": checkpoint_file_name("final"),
               **summary}
    save_summary(folder / SUMMARY_FILE, summary)
    reporter.emit("validation", path=str(folder / SUMMARY_FILE), space=summary["space"],
                  dice={summary["labels"][k]: v.get("Dice") for k, v in summary["mean"].items()},
                  foreground_mean_dice=summary["foreground_mean"].get("Dice"),
                  seconds=round(time.perf_counter() - started, 2))
    return summary


def _predict_raw_cases(setup: FoldSetup, cases: list[Case], folder: Path, runtime: Runtime,
                       reporter: ProgressReporter | None) -> None:
    from AutoSegNetLib.inference import Predictor
    from AutoSegNetLib.inference.files import InputCase, predict_cases

    folder.mkdir(parents=True, exist_ok=True)
    if not cases:
        return
    predictor = Predictor.from_model_folder(setup.model_folder, folds=[setup.fold], checkpoint="final",
                                            device=runtime.device, postprocess=False)
    predict_cases(predictor, [InputCase(c.name, tuple(c.images)) for c in cases], folder,
                  setup.dataset_json.file_ending, save_probabilities=True,
                  reporter=_CaseEvents(reporter) if reporter is not None else None)


def _write_next_stage_inputs(setup: FoldSetup, cases: list[Case], folder: Path) -> None:
    """Store the cascade inputs of ``cases`` from their label maps in ``folder`` (raw grid); see the module."""
    if setup.next_stage is None or not cases:
        return
    ending = setup.dataset_json.file_ending
    reader = io_for(ending, setup.dataset_json.overwrite_image_reader_writer)
    written = [(c.name, c.images) for c in cases if (folder / f"{c.name}{ending}").is_file()]  # not failed ones
    skipped = write_stage_predictions_from_files(setup.next_stage, setup.plans, written, folder, ending, reader,
                                                 setup.fold)
    warn_skipped(setup.next_stage, skipped, setup.dataset_name, setup.configuration, setup.fold)
    log.info("Wrote %d %s input(s) to %s", len(written) - len(skipped), setup.next_stage.configuration,
             setup.next_stage.predictions)


def validation_window(setup: FoldSetup, runtime: Runtime, mirror_axes: list[int]) -> SlidingWindowSettings:
    """How validation in the preprocessed space predicts: the model folder's settings, as prediction takes them
    (:meth:`~AutoSegNetLib.inference.sliding_window.SlidingWindowSettings.for_model`: the patch the network was
    trained with, also after ``train --patch-size``), on the training device, averaging logits as nnU-Net's
    validation does."""
    model = ModelFolder.open(setup.model_folder, configuration=setup.configuration)
    return SlidingWindowSettings.for_model(model, mirror_axes, device=runtime.device, average="logits")


@torch.no_grad()
def _preprocessed_case_metrics(setup: FoldSetup, name: str, model: nn.Module, inferer: SlidingWindowInferer,
                               labels: LabelSet) -> dict[str, Any]:
    """Metrics of one case predicted in the preprocessed space (data ``(C, Z, Y, X)``, for a cascade stage with
    the one-hot lowres cross-validation prediction appended); stores it for the next stage when there is one."""
    data, seg, properties = setup.case_source().load_case(name)
    data = np.array(data, dtype=np.float32)
    if setup.previous_stage is not None:
        seg = np.asarray(seg)
        data = np.concatenate([data, previous_stage_channels(seg[1], setup.previous_stage.label_values)])
        seg = seg[:1]
    probabilities = inferer(model, torch.from_numpy(data))  # softmax / sigmoid of the averaged logits
    regions = setup.labels.regions is not None
    order = setup.dataset_json.regions_class_order if regions else None
    prediction = probabilities_to_segmentation(probabilities.cpu().numpy(), order)  # on the GPU under CUDA
    reference = np.where(np.asarray(seg[0]) < 0, 0, np.asarray(seg[0]))
    spacing = [1.0] * (3 - len(setup.plan.spacing)) + list(setup.plan.spacing)
    metrics = case_metrics(reference, prediction, labels.items, spacing, labels.ignore_label, distances=False)
    result: dict[str, Any] = {"case": name, "metrics": metrics}
    if setup.next_stage is not None:
        result["next_stage_written"] = write_stage_prediction(setup.next_stage, name, prediction, properties,
                                                              setup.fold)
    return result
