"""Predict a folder of image files: ``IN/<case>_0000<ending>`` ... -> ``OUT/<case><ending>`` (+ probabilities,
uncertainty), in the input's geometry and file format, optionally one part of the cases per machine.

Safety: before anything is written, no output may overwrite an input file or another output
(:mod:`~AutoSegNetLib.inference.output_clashes`); an output folder that cannot be written is an error that says
so. A case that cannot be read or predicted (unreadable, 4D, 2D for a 3D model, only NaN) does not stop the
others: it gets a ``case`` event with ``status="failed"``, and after the last case :class:`PredictionFailedError`
lists every failure (``autosegnet predict`` then exits with status 1). NaN / Inf voxels are counted per file in
a warning and replaced by 0 (for NIfTI, whose reader already makes them 0, the stored voxels are counted).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from AutoSegNetLib import __version__
from AutoSegNetLib.dataset.raw import group_channel_files
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import ImageIO, file_ending, io_for, registered_ios
from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.imageio.sitk_io import nifti_non_finite
from AutoSegNetLib.inference.output_clashes import PlannedOutputs, check_output_names
from AutoSegNetLib.inference.outputs import (
    PREDICTION_INFO_NAME,
    LabelInfo,
    cannot_write,
    segmentation_path,
    write_probabilities,
    write_segmentation,
    write_uncertainty,
)
from AutoSegNetLib.inference.predictor import Prediction, Predictor, non_finite_warning
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import write_json
from AutoSegNetLib.utils.stop import StopRequest, is_stopped

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputCase:
    """One case to predict: its name and channel files in channel order."""

    name: str
    files: tuple[Path, ...]


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be predicted: the file at fault (its first channel file when unknown) and why."""

    case: str
    file: Path
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"case": self.case, "file": str(self.file), "error": self.error}

    def described(self) -> str:
        """The error, preceded by the file where the error does not name it (errors always name the case)."""
        return self.error if self.file.name in self.error else f"{self.file}: {self.error}"


class PredictionFailedError(AutoSegNetError):
    """Some cases could not be predicted; the others were. ``written``: their label maps; ``failures``: the rest."""

    def __init__(self, written: list[Path], failures: list[CaseFailure], total: int, output_folder: Path) -> None:
        self.written, self.failures, self.total = written, failures, total
        listed = "\n".join(f"  - {f.described()}" for f in failures)
        super().__init__(
            f"{len(failures)} of {total} cases failed (the other predictions are in {output_folder}):\n{listed}\n"
            "Fix or remove these files and run predict again with --continue to predict only the missing cases."
        )


def list_input_cases(folder: str | Path, num_channels: int, ending: str | None = None) -> tuple[list[InputCase], str]:
    """Cases in ``folder`` named ``<case>_<CCCC><ending>`` and the ending used.

    ``ending`` defaults to the most common supported image ending there. Every case needs channels
    ``0000`` .. ``num_channels - 1``; a missing or extra channel is an error naming the case.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoSegNetError(f"Input folder {folder} does not exist.")
    ending = ending if ending and any(folder.glob(f"*{ending}")) else _detect_ending(folder)
    grouped = group_channel_files(folder, ending)
    if not grouped:
        raise AutoSegNetError(
            f"No images named <case>_0000{ending} in {folder}. Name the channel files like nnU-Net: "
            f"case_0000{ending}, case_0001{ending}, ..."
        )
    cases = []
    expected = list(range(num_channels))
    for name, channels in sorted(grouped.items()):
        if sorted(channels) != expected:
            have = ", ".join(f"{c:04d}" for c in sorted(channels))
            raise AutoSegNetError(
                f"Case {name!r} in {folder} has channel files {have}; the model needs channels "
                f"{', '.join(f'{c:04d}' for c in expected)}."
            )
        cases.append(InputCase(name, tuple(channels[c] for c in expected)))
    return cases, ending


def select_part(cases: Sequence[InputCase], num_parts: int = 1, part_id: int = 0) -> list[InputCase]:
    """The cases of part ``part_id`` of ``num_parts`` (every ``num_parts``-th case), for splitting across machines."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise AutoSegNetError(f"--part-id must be in 0..{num_parts - 1} for --num-parts {num_parts}, got {part_id}.")
    return list(cases[part_id::num_parts])


def predict_files(
    predictor: Predictor,
    input_folder: str | Path,
    output_folder: str | Path,
    *,
    save_probabilities: bool = False,
    uncertainty: str | None = None,
    num_parts: int = 1,
    part_id: int = 0,
    skip_existing: bool = False,
    reporter: ProgressReporter | None = None,
    stop: StopRequest | None = None,
) -> list[Path]:
    """Predict every case (of this part) in ``input_folder`` into ``output_folder``; returns the label-map paths.

    Writes ``prediction_info.json`` (model and settings) beside the results; see :func:`predict_cases`. With
    ``stop`` requested already, nothing is written (not even the output folder). Refused before anything is
    written: an output that would overwrite an input file or another output, an output folder inside the input
    folder where an output name is taken, an output folder that cannot be written.
    """
    dataset_json = predictor.model.dataset_json
    all_cases, ending = list_input_cases(input_folder, dataset_json.num_channels, dataset_json.file_ending)
    cases = select_part(all_cases, num_parts, part_id)
    if is_stopped(stop):
        return _stopped(reporter or ProgressReporter("none"), [], [], len(cases))
    output_folder = Path(output_folder)
    plan = PlannedOutputs(cases, output_folder, ending, save_probabilities, uncertainty is not None, skip_existing)
    check_output_names(plan, Path(input_folder), all_cases)
    try:
        output_folder.mkdir(parents=True, exist_ok=True)
        _write_info(output_folder, predictor, save_probabilities, uncertainty)
    except OSError as error:
        raise cannot_write(output_folder, error) from None
    return predict_cases(predictor, cases, output_folder, ending, save_probabilities=save_probabilities,
                         uncertainty=uncertainty, skip_existing=skip_existing, reporter=reporter,
                         stop=stop)


def predict_cases(
    predictor: Predictor,
    cases: Sequence[InputCase],
    output_folder: str | Path,
    ending: str,
    *,
    save_probabilities: bool = False,
    uncertainty: str | None = None,
    skip_existing: bool = False,
    reporter: ProgressReporter | None = None,
    stop: StopRequest | None = None,
) -> list[Path]:
    """Predict image files case by case into ``output_folder`` (``<case><ending>``, and with
    ``save_probabilities`` ``<case>.npz`` + ``<case>.json``, with ``uncertainty`` ``<case>_uncertainty<ending>``).

    Training uses this for its cross-validation predictions (``fold_<k>/validation/``, with probabilities).
    Emits a ``case`` progress event per case (``case``, ``index``, ``total``, ``seconds``) and ``done`` at the end.
    With ``skip_existing`` cases whose label map already exists are left alone. Once ``stop`` is requested no
    further case is started; the ``done`` event then has ``status="stopped"`` and ``cases`` = the cases written
    (every output file is written atomically, so a stop never leaves a half-written file).

    A case that cannot be read or predicted does not stop the others: its ``case`` event has ``status="failed"``,
    ``file`` and ``error``; the ``done`` event then has ``status="failed"`` (unless stopped), ``failed`` and
    ``failures`` (``case``, ``file``, ``error`` each), and :class:`PredictionFailedError` is raised after the last case.
    An output that cannot be written stops the run with an error naming the folder.
    """
    reporter = reporter or ProgressReporter("none")
    output_folder = Path(output_folder)
    run = _CaseRun.of(predictor, output_folder, ending, save_probabilities, uncertainty, reporter, len(cases))
    written: list[Path] = []
    failures: list[CaseFailure] = []
    start = time.perf_counter()
    for index, case in enumerate(cases):
        if is_stopped(stop):
            return _stopped(reporter, written, failures, len(cases), output_folder)
        target = segmentation_path(output_folder, case.name, ending)
        if skip_existing and target.is_file():
            written.append(target)
            continue
        outcome = run.predict(case, index)
        (failures if isinstance(outcome, CaseFailure) else written).append(outcome)
    summary = _failure_summary(failures, len(cases))
    reporter.emit("done", stage="predict", cases=len(written), seconds=round(time.perf_counter() - start, 3),
                  output=str(output_folder), **summary)
    if failures:
        raise PredictionFailedError(written, failures, len(cases), output_folder)
    return written


@dataclass(frozen=True)
class _CaseRun:
    """What predicting one case of :func:`predict_cases` needs: the predictor, where and how outputs are
    written (``label_info`` only when probabilities are saved), the uncertainty asked for, the events' sink."""

    predictor: Predictor
    folder: Path
    ending: str
    io: ImageIO
    label_info: LabelInfo | None
    uncertainty: str | None
    reporter: ProgressReporter
    total: int

    @classmethod
    def of(cls, predictor: Predictor, folder: Path, ending: str, save_probabilities: bool, uncertainty: str | None,
           reporter: ProgressReporter, total: int) -> _CaseRun:
        dataset_json = predictor.model.dataset_json
        io = io_for(ending, dataset_json.overwrite_image_reader_writer if ending == dataset_json.file_ending else None)
        label_info = LabelInfo.of(dataset_json)
        return cls(predictor, folder, ending, io, label_info if save_probabilities else None, uncertainty, reporter,
                   total)

    def predict(self, case: InputCase, index: int) -> Path | CaseFailure:
        """Predict and write case number ``index`` (0-based); its label map's path, or why it failed (a ``case``
        event says which)."""
        try:
            image, geometry = read_case(self.io, case)
            result = self.predictor.predict_case(image, geometry, return_probabilities=self.label_info is not None,
                                                 uncertainty=self.uncertainty, case_name=case.name)
        except AutoSegNetError as error:
            return _failed(self.reporter, case, str(error), index, self.total)
        path = _write_outputs(self.folder, case.name, result, geometry, self.ending, self.io, self.label_info)
        self.reporter.emit("case", stage="predict", case=case.name, index=index + 1, total=self.total,
                           seconds=round(result.seconds, 3))
        return path


def read_case(io: ImageIO, case: InputCase) -> tuple[np.ndarray, Geometry]:
    """The case's image ``(C, Z, Y, X)`` float32 and geometry, NaN / Inf replaced by 0 with a warning per file.

    Any failure of the reader (a damaged, truncated, 4D or unreadable file) is an :class:`AutoSegNetError`
    naming the case; so is a file without a single finite voxel.
    """
    try:
        image, geometry = io.read_images(case.files)
    except AutoSegNetError as error:
        raise AutoSegNetError(f"case {case.name!r}: {error}") from None
    except Exception as error:  # a damaged file may fail anywhere inside a reader library
        files = ", ".join(str(f) for f in case.files)
        raise AutoSegNetError(f"case {case.name!r}: cannot read {files}: {type(error).__name__}: {error}") from None
    if image.shape[0] == len(case.files):  # one channel per file: name the file in the warning
        for channel, path in enumerate(case.files):
            nan, inf = _stored_non_finite(path, image[channel])
            warning = non_finite_warning(f"case {case.name!r}, {path.name}", nan, inf, image[channel].size)
            if warning:
                log.warning(warning)
                image[channel][~np.isfinite(image[channel])] = 0.0  # what NIfTI's reader did already
    return image, geometry


def _stored_non_finite(path: Path, channel: np.ndarray) -> tuple[int, int]:
    """``(NaN, Inf)`` voxel counts of one channel file: as stored for NIfTI (read as 0), else as read."""
    if file_ending(path) in (".nii", ".nii.gz") and channel.dtype.kind == "f":
        try:
            return nifti_non_finite(path)
        except (OSError, EOFError, ValueError):
            pass  # the file was read once already; count what the reader gave
    nan = int(np.isnan(channel).sum())
    return nan, int((~np.isfinite(channel)).sum()) - nan


def _write_outputs(folder: Path, case: str, result: Prediction, geometry: Geometry, ending: str, io: ImageIO,
                   label_info: LabelInfo | None) -> Path:
    """Write a case's label map (+ probabilities with ``label_info``, + uncertainty); returns the label map path."""
    try:
        path = write_segmentation(folder, case, result.segmentation, geometry, ending, io)
        if label_info is not None:
            write_probabilities(folder, case, result.probabilities, geometry, ending, label_info)
        if result.uncertainty is not None:
            write_uncertainty(folder, case, result.uncertainty, geometry, ending)
    except OSError as error:
        raise cannot_write(folder, error) from None
    return path


def _failed(reporter: ProgressReporter, case: InputCase, error: str, index: int, total: int) -> CaseFailure:
    failure = CaseFailure(case.name, _culprit(case, error), error)
    log.error("predict: FAILED: %s", failure.described())
    reporter.emit("case", stage="predict", case=case.name, index=index + 1, total=total, status="failed",
                  file=str(failure.file), error=error)
    return failure


def _culprit(case: InputCase, error: str) -> Path:
    """The channel file an error names (the first channel file when it names none or several)."""
    named = [path for path in case.files if str(path) in error or path.name in error]
    return named[0] if len(named) == 1 else case.files[0]


def _failure_summary(failures: list[CaseFailure], total: int) -> dict:
    """Fields the ``done`` event gets when cases failed (none otherwise)."""
    if not failures:
        return {}
    return {"status": "failed", "failed": len(failures), "total": total,
            "failures": [f.to_dict() for f in failures],
            "message": f"{len(failures)} of {total} cases failed: " + ", ".join(f.case for f in failures)}


def _stopped(reporter: ProgressReporter, written: list[Path], failures: list[CaseFailure], total: int,
             output_folder: Path | None = None) -> list[Path]:
    log.warning("predict: STOPPED on request after %d of %d cases; the label maps written are complete.",
                len(written), total)
    extra = {"failed": len(failures), "failures": [f.to_dict() for f in failures]} if failures else {}
    reporter.emit("done", stage="predict", status="stopped", cases=len(written), total=total, **extra)
    if failures:
        raise PredictionFailedError(written, failures, total, output_folder or Path("."))
    return written


def _detect_ending(folder: Path) -> str:
    supported = {e for cls in registered_ios().values() for e in cls.endings}
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        ending = file_ending(path)
        if path.is_file() and ending in supported:
            counts[ending] = counts.get(ending, 0) + 1
    if not counts:
        raise AutoSegNetError(f"No image files in {folder} (supported endings: {', '.join(sorted(supported))}).")
    return max(counts, key=counts.get)


def _write_info(folder: Path, predictor: Predictor, save_probabilities: bool, uncertainty: str | None) -> None:
    """``prediction_info.json``: which model and settings produced the files in ``folder``."""
    write_json(folder / PREDICTION_INFO_NAME, {
        "engine_version": __version__,
        "model_folder": str(predictor.model.folder),
        "configuration": predictor.model.configuration_name,
        "folds": predictor.folds,
        "patch_size": list(predictor.window.patch_size),
        "step": predictor.step,
        "tta": predictor.tta,
        "mirror_axes": predictor.mirror_axes if predictor.tta else None,
        "device": str(predictor.device),
        "compute": dataclasses.asdict(predictor.compute),
        "postprocessing": predictor.postprocessing is not None,
        "training_orientation": predictor.training_orientation,
        "reorient": predictor.reorient,
        "save_probabilities": save_probabilities,
        "uncertainty": uncertainty,
    })
