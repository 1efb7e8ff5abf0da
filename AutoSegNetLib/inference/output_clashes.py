"""Before ``predict`` writes anything: no output may overwrite an input file or another output.

A case's label map is ``<case><ending>``, so with ``-o`` equal to ``-i`` the label map of case ``b_0000`` is
``b_0000.nii.gz`` -- channel 0 of case ``b``. Outputs may go into the input folder (or a folder inside it) only
where every output name is free; files left by an earlier prediction there count as taken, except for the cases
``--continue`` skips (their files are not written again) and ``prediction_info.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.outputs import PREDICTION_INFO_NAME, case_outputs, segmentation_path

if TYPE_CHECKING:
    from AutoSegNetLib.inference.files import InputCase


@dataclass(frozen=True)
class PlannedOutputs:
    """What a prediction run will write: for which cases, where, and which kinds of files."""

    cases: Sequence[InputCase]
    output_folder: Path
    ending: str
    save_probabilities: bool = False
    uncertainty: bool = False
    skip_existing: bool = False


def check_output_names(plan: PlannedOutputs, input_folder: Path, all_cases: Sequence[InputCase]) -> None:
    """Raise :class:`AutoSegNetError` naming the clash if an output of ``plan`` would overwrite an input file
    (any channel file of ``all_cases``), another output, or -- with the output folder in the input folder -- an
    existing file."""
    outputs = _outputs(plan)
    inputs = {_real(path): f"channel {channel} of case {case.name!r}" for case in all_cases
              for channel, path in enumerate(case.files)}
    suggestion = f"-o {Path(input_folder).parent / (Path(input_folder).name + '_predictions')}"
    for path, what in outputs.items():
        if _real(path) in inputs:
            raise AutoSegNetError(
                f"predict would overwrite input file {path} ({inputs[_real(path)]}) with {what}. Write the "
                f"predictions to another folder, e.g. {suggestion}."
            )
    if _is_inside(plan.output_folder, input_folder):
        _check_free(outputs, plan, input_folder, suggestion)


def _outputs(plan: PlannedOutputs) -> dict[Path, str]:
    """Every output path of ``plan`` with its description; two outputs of one name are an error."""
    outputs: dict[Path, str] = {plan.output_folder / PREDICTION_INFO_NAME: "the prediction settings"}
    for case in plan.cases:
        for path, what in case_outputs(plan.output_folder, case.name, plan.ending, plan.save_probabilities,
                                       plan.uncertainty).items():
            if path in outputs:
                raise AutoSegNetError(
                    f"predict would write {path.name} twice: as {outputs[path]} and as {what}. Rename one of the "
                    "cases' files in the input folder."
                )
            outputs[path] = what
    return outputs


def _check_free(outputs: dict[Path, str], plan: PlannedOutputs, input_folder: Path, suggestion: str) -> None:
    skipped = {case.name for case in plan.cases
               if plan.skip_existing and segmentation_path(plan.output_folder, case.name, plan.ending).is_file()}
    skipped_outputs = {path for case in skipped for path in case_outputs(
        plan.output_folder, case, plan.ending, plan.save_probabilities, plan.uncertainty)}
    for path, what in outputs.items():
        if path.name == PREDICTION_INFO_NAME or path in skipped_outputs or not os.path.lexists(path):
            continue
        raise AutoSegNetError(
            f"{path.name} exists already in {path.parent}, which is {_where(plan.output_folder, input_folder)}; "
            f"predict would overwrite it with {what}. Predictions go into the input folder only where every output "
            f"name is free: choose another -o, e.g. {suggestion}."
        )


def _where(output_folder: Path, input_folder: Path) -> str:
    same = _real(output_folder) == _real(input_folder)
    return f"the input folder {input_folder}" if same else f"inside the input folder {input_folder}"


def _is_inside(folder: Path, parent: Path) -> bool:
    folder, parent = _real(folder), _real(parent)
    return folder == parent or parent in folder.parents


def _real(path: Path) -> Path:
    """``path`` with links resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(path))
