"""Predict with several configurations in one call and ensemble them (``autosegnet predict -c 2d 3d_fullres``).

The same steps as nnU-Net's README prescribes by hand (``nnUNetv2_predict ... --save_probabilities`` per
configuration, then ``nnUNetv2_ensemble``), done in one run:

1. every configuration predicts the cases into ``OUT/ensemble_members/<model folder name>/`` with probabilities,
   one model loaded at a time (so memory holds one configuration's networks, not all of them);
2. the probabilities are averaged per case exactly as ``autosegnet ensemble`` does
   (:func:`~AutoSegNetLib.inference.ensemble.ensemble_folders`, ``vote="soft"``) into ``OUT/<case><ending>``.

Each configuration averages its own folds and mirrored passes first (as ``--average`` says); the configurations
then count equally. No model's postprocessing is applied to the ensemble (the rules of one configuration do not
hold for the average); ``autosegnet find-best`` determines rules for an ensemble, applied with
``autosegnet postprocess apply --rules``. After a complete run of all cases (one part, nothing failed or stopped)
the member folders are removed; otherwise they stay so that ``--continue`` only predicts what is missing.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from AutoSegNetLib import __version__
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.ensemble import ensemble_folders
from AutoSegNetLib.inference.files import (
    CaseFailure,
    InputCase,
    PredictionFailedError,
    list_input_cases,
    predict_cases,
    select_part,
)
from AutoSegNetLib.inference.output_clashes import PlannedOutputs, check_output_names
from AutoSegNetLib.inference.outputs import PREDICTION_INFO_NAME, cannot_write, probability_cases, segmentation_path
from AutoSegNetLib.inference.predictor import Predictor
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import write_json
from AutoSegNetLib.utils.stop import StopRequest, is_stopped

log = logging.getLogger(__name__)

#: Folder inside the output folder holding each configuration's predictions with probabilities.
MEMBERS_FOLDER = "ensemble_members"


def member_folder(output_folder: Path, model_folder: Path) -> Path:
    """Where the member ``model_folder`` writes its predictions: ``OUT/ensemble_members/<model folder name>``."""
    return Path(output_folder) / MEMBERS_FOLDER / Path(model_folder).name


class _MemberReporter(ProgressReporter):
    """Passes a member's events on, marked with its configuration; its ``done`` is not the run's end."""

    def __init__(self, parent: ProgressReporter, configuration: str) -> None:
        super().__init__("none")
        self.parent, self.configuration = parent, configuration
        self.mode = parent.mode

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        if event == "done":  # the member's summary; the run's own done event follows the ensemble
            return {"event": event, **fields, "configuration": self.configuration}
        return self.parent.emit(event, **fields, configuration=self.configuration)


def predict_with_configurations(
    model_folders: Sequence[Path],
    load: Callable[[Path], Predictor],
    input_folder: str | Path,
    output_folder: str | Path,
    *,
    save_probabilities: bool = False,
    num_parts: int = 1,
    part_id: int = 0,
    skip_existing: bool = False,
    reporter: ProgressReporter | None = None,
    stop: StopRequest | None = None,
) -> list[Path]:
    """Predict ``input_folder`` with every model of ``model_folders`` (loaded one at a time with ``load``) and
    write the ensemble (mean probabilities) to ``output_folder``; returns the label-map paths.

    Options as in :func:`~AutoSegNetLib.inference.files.predict_files`. Cases that fail in any member are left
    out of the ensemble and reported, after the others are written, by :class:`PredictionFailedError`.
    """
    if len(model_folders) < 2:
        raise AutoSegNetError("An ensemble of configurations needs at least two model folders.")
    reporter = reporter or ProgressReporter("none")
    output_folder = Path(output_folder)
    predictor = load(Path(model_folders[0]))
    dataset_json = predictor.model.dataset_json
    all_cases, ending = list_input_cases(input_folder, dataset_json.num_channels, dataset_json.file_ending)
    cases = select_part(all_cases, num_parts, part_id)
    if is_stopped(stop):
        return _stopped(reporter, [], len(cases))
    check_output_names(PlannedOutputs(cases, output_folder, ending, save_probabilities, False, skip_existing),
                       Path(input_folder), all_cases)
    todo = [c for c in cases if not (skip_existing and segmentation_path(output_folder, c.name, ending).is_file())]
    run = _EnsembleRun(output_folder, ending, save_probabilities, skip_existing, num_parts, reporter, stop)
    members, infos, failures = [], [], []
    for index, folder in enumerate(model_folders):
        predictor = predictor if index == 0 else load(Path(folder))
        members.append(member_folder(output_folder, Path(folder)))
        infos.append(_member_info(predictor, members[-1]))
        reporter.emit("stage", stage="predict", configuration=predictor.model.configuration_name,
                      member=index + 1, members=len(model_folders), cases=len(todo))
        failures += run.predict_member(predictor, todo, members[-1])
        predictor = None  # free this configuration's networks before loading the next
        if is_stopped(stop):
            return _stopped(reporter, [], len(cases))
    return run.finish(members, infos, failures, cases, todo)


@dataclass(frozen=True)
class _EnsembleRun:
    """The options of one :func:`predict_with_configurations` run that its members and the ensemble share."""

    output_folder: Path
    ending: str
    save_probabilities: bool
    skip_existing: bool
    num_parts: int
    reporter: ProgressReporter
    stop: StopRequest | None

    def predict_member(self, predictor: Predictor, cases: Sequence[InputCase], folder: Path) -> list[CaseFailure]:
        """Predict ``cases`` with probabilities into ``folder``; returns the cases that failed."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise cannot_write(folder, error) from None
        try:
            predict_cases(predictor, cases, folder, self.ending, save_probabilities=True,
                          skip_existing=self.skip_existing, stop=self.stop,
                          reporter=_MemberReporter(self.reporter, predictor.model.configuration_name))
        except PredictionFailedError as error:
            return list(error.failures)
        return []

    def finish(self, members: list[Path], infos: list[dict[str, Any]], failures: list[CaseFailure],
               cases: list[InputCase], todo: list[InputCase]) -> list[Path]:
        """Ensemble the cases every member predicted, report, and remove the members after a complete run;
        returns the label-map paths of ``cases``."""
        output_folder = self.output_folder
        _write_info(output_folder, infos, self.save_probabilities)
        predicted = [set(probability_cases(m)) for m in members]
        ready = [c.name for c in todo if all(c.name in found for found in predicted)]
        written = ensemble_folders(members, output_folder, self.save_probabilities, self.reporter,
                                   cases=ready) if ready else []
        written += [segmentation_path(output_folder, c.name, self.ending) for c in cases if c not in todo]
        failures = _unique_failures(failures)
        self.reporter.emit("done", stage="predict", cases=len(written), output=str(output_folder),
                           configurations=[info["configuration"] for info in infos],
                           **_failure_fields(failures))
        if failures:
            raise PredictionFailedError(written, failures, len(cases), output_folder)
        if self.num_parts == 1:
            shutil.rmtree(output_folder / MEMBERS_FOLDER, ignore_errors=True)
        return written


def _member_info(predictor: Predictor, folder: Path) -> dict[str, Any]:
    return {
        "configuration": predictor.model.configuration_name, "model_folder": str(predictor.model.folder),
        "folds": predictor.folds, "step": predictor.step, "tta": predictor.tta, "average": predictor.average,
        "device": str(predictor.device), "predictions": str(folder),
    }


def _write_info(folder: Path, members: list[dict[str, Any]], save_probabilities: bool) -> None:
    """``prediction_info.json`` of the ensemble: its members and how they were combined."""
    try:
        write_json(folder / PREDICTION_INFO_NAME, {
            "engine_version": __version__, "ensemble": "mean of the members' probabilities", "members": members,
            "postprocessing": False, "save_probabilities": save_probabilities,
        })
    except OSError as error:
        raise cannot_write(folder, error) from None


def _failure_fields(failures: list[CaseFailure]) -> dict[str, Any]:
    """Fields of the ``done`` event when cases failed (none otherwise), as a single-configuration run has them."""
    if not failures:
        return {}
    return {"status": "failed", "failed": len(failures), "failures": [f.to_dict() for f in failures]}


def _unique_failures(failures: list[CaseFailure]) -> list[CaseFailure]:
    """One failure per case (a case unreadable for one member is usually unreadable for all)."""
    seen: dict[str, CaseFailure] = {}
    for failure in failures:
        seen.setdefault(failure.case, failure)
    return list(seen.values())


def _stopped(reporter: ProgressReporter, written: list[Path], total: int) -> list[Path]:
    log.warning("predict: STOPPED on request; the member predictions written are kept, run again with --continue "
                "to finish the ensemble.")
    reporter.emit("done", stage="predict", status="stopped", cases=len(written), total=total)
    return written
