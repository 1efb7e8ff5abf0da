"""Predict a folder of image files: ``IN/<case>_0000<ending>`` ... -> ``OUT/<case><ending>`` (+ probabilities,
uncertainty), in the input's geometry and file format, optionally one part of the cases per machine."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from AutoSegNetLib import __version__
from AutoSegNetLib.dataset.raw import group_channel_files
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import file_ending, io_for, registered_ios
from AutoSegNetLib.inference.outputs import (
    LabelInfo,
    segmentation_path,
    write_probabilities,
    write_segmentation,
    write_uncertainty,
)
from AutoSegNetLib.inference.predictor import Predictor
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputCase:
    """One case to predict: its name and channel files in channel order."""

    name: str
    files: tuple[Path, ...]


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
) -> list[Path]:
    """Predict every case (of this part) in ``input_folder`` into ``output_folder``; returns the label-map paths.

    Writes ``prediction_info.json`` (model and settings) beside the results; see :func:`predict_cases`.
    """
    dataset_json = predictor.model.dataset_json
    cases, ending = list_input_cases(input_folder, dataset_json.num_channels, dataset_json.file_ending)
    cases = select_part(cases, num_parts, part_id)
    output_folder = Path(output_folder)
    output_folder.mkdir(parents=True, exist_ok=True)
    _write_info(output_folder, predictor, save_probabilities, uncertainty)
    return predict_cases(predictor, cases, output_folder, ending, save_probabilities=save_probabilities,
                         uncertainty=uncertainty, skip_existing=skip_existing, reporter=reporter)  # fmt: skip


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
) -> list[Path]:
    """Predict image files case by case into ``output_folder`` (``<case><ending>``, and with
    ``save_probabilities`` ``<case>.npz`` + ``<case>.json``, with ``uncertainty`` ``<case>_uncertainty<ending>``).

    Training uses this for its cross-validation predictions (``fold_<k>/validation/``, with probabilities).
    Emits a ``case`` progress event per case (``case``, ``index``, ``total``, ``seconds``) and ``done`` at the end.
    With ``skip_existing`` cases whose label map already exists are left alone.
    """
    reporter = reporter or ProgressReporter("none")
    dataset_json = predictor.model.dataset_json
    output_folder = Path(output_folder)
    io = io_for(ending, dataset_json.overwrite_image_reader_writer if ending == dataset_json.file_ending else None)
    label_info = LabelInfo.of(dataset_json)
    written = []
    start = time.perf_counter()
    for index, case in enumerate(cases):
        target = segmentation_path(output_folder, case.name, ending)
        if skip_existing and target.is_file():
            written.append(target)
            continue
        image, geometry = io.read_images(case.files)
        result = predictor.predict_case(image, geometry, return_probabilities=save_probabilities,
                                        uncertainty=uncertainty, case_name=case.name)  # fmt: skip
        written.append(write_segmentation(output_folder, case.name, result.segmentation, geometry, ending, io))
        if save_probabilities:
            write_probabilities(output_folder, case.name, result.probabilities, geometry, ending, label_info)
        if result.uncertainty is not None:
            write_uncertainty(output_folder, case.name, result.uncertainty, geometry, ending)
        reporter.emit("case", stage="predict", case=case.name, index=index + 1, total=len(cases),
                      seconds=round(result.seconds, 3))  # fmt: skip
    reporter.emit("done", stage="predict", cases=len(cases), seconds=round(time.perf_counter() - start, 3),
                  output=str(output_folder))  # fmt: skip
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
    write_json(folder / "prediction_info.json", {
        "engine_version": __version__,
        "model_folder": str(predictor.model.folder),
        "configuration": predictor.model.configuration_name,
        "folds": predictor.folds,
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
    })  # fmt: skip
