"""Choose the best configuration (or 2-way ensemble) from cross-validation, and say how to predict with it.

Each trained configuration's cross-validation predictions are evaluated against the raw labels (mean
foreground Dice, nnU-Net's criterion). Every pair of configurations whose validation folders hold probabilities
is ensembled case by case (averaged probabilities) and evaluated too. For the winner, connected-component
postprocessing is determined; for a single configuration it is written into its model folder (``predict``
applies it from there), for an ensemble into the ensemble's folder. ``inference_information.json`` and
``inference_instructions.txt`` in ``results/<Dataset>/`` record the ranking and the commands.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.crossval import (
    DEFAULT_FOLDS,
    complete_folds,
    crossval_pairs,
    has_probabilities,
    reference_files,
)
from AutoSegNetLib.evaluation.evaluate import CasePair, LabelSet, evaluate_pairs, save_summary
from AutoSegNetLib.inference.ensemble import ensemble_case
from AutoSegNetLib.inference.labels import probabilities_to_segmentation
from AutoSegNetLib.inference.model_folder import ModelFolder
from AutoSegNetLib.inference.outputs import write_segmentation
from AutoSegNetLib.layout import POSTPROCESSING_FILE, SUMMARY_FILE, crossval_folder_name, model_folder_name
from AutoSegNetLib.postprocessing.determine import determine_postprocessing
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import write_json
from AutoSegNetLib.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A configuration or an ensemble of configurations, with its cross-validation result."""

    name: str
    configurations: list[str]
    model_folders: list[Path]
    folder: Path
    pairs: list[CasePair] = field(default_factory=list)
    foreground_dice: float = float("nan")


def find_best_configuration(
    workspace: Workspace,
    dataset: str,
    configurations: Sequence[str] | None = None,
    plans_name: str | None = None,
    folds: Sequence[int | str] = DEFAULT_FOLDS,
    ensembles: bool = True,
    num_workers: int = 1,
    reporter: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Rank configurations and 2-way ensembles; returns (and writes) the inference information."""
    folds = [str(f) for f in folds]
    dataset_name = workspace.resolve_dataset(dataset)
    results = workspace.results_dataset(dataset_name)
    references = reference_files(workspace.raw_dataset(dataset_name))
    singles = _single_candidates(results, configurations, plans_name, folds, references)
    if not singles:
        raise AutoSegNetError(
            f"No configuration of {dataset_name} has cross-validation predictions for folds {', '.join(folds)}. "
            "Train all folds first (or choose folds with -f)."
        )
    labels = LabelSet.from_dataset_json(ModelFolder.open(singles[0].model_folders[0]).dataset_json)
    candidates = list(singles)
    if ensembles:
        candidates += _ensemble_candidates(results, singles, folds)
    for candidate in candidates:
        summary = evaluate_pairs(candidate.pairs, labels, distances=False, num_workers=num_workers)
        save_summary(candidate.folder / SUMMARY_FILE, summary)
        candidate.foreground_dice = float(summary["foreground_mean"]["Dice"])
        log.info("%s: mean foreground Dice %.4f", candidate.name, candidate.foreground_dice)
        if reporter is not None:
            reporter.emit("candidate", stage="find-best", name=candidate.name, dice=candidate.foreground_dice)
    best = max(candidates, key=lambda c: c.foreground_dice)
    rules = determine_postprocessing(best.pairs, labels, num_workers)
    rules_path = (best.model_folders[0] if len(best.configurations) == 1 else best.folder) / POSTPROCESSING_FILE
    write_json(rules_path, rules)
    information = _information(dataset_name, folds, candidates, best, rules, rules_path)
    write_json(results / "inference_information.json", information)
    (results / "inference_instructions.txt").write_text("\n".join(information["commands"]) + "\n")
    return information


def _single_candidates(
    results: Path, configurations: Sequence[str] | None, plans_name: str | None, folds: list[str],
    references: dict[str, Path],
) -> list[Candidate]:
    pattern = model_folder_name(plans_name or "*", "*")
    candidates = []
    for folder in sorted(p for p in results.glob(pattern) if p.is_dir()):
        model = ModelFolder.open(folder)
        if configurations and model.configuration_name not in configurations:
            continue
        if not complete_folds(folder, folds):
            log.warning("Skipping %s: not every fold of %s has validation predictions.", folder.name, folds)
            continue
        pairs = crossval_pairs(folder, folds, references, model.dataset_json.file_ending)
        name = model.configuration_name if plans_name or _unique_config(results, model) else folder.name
        candidates.append(Candidate(name, [model.configuration_name], [folder],
                                    folder / crossval_folder_name(folds), pairs))
    return candidates


def _unique_config(results: Path, model: ModelFolder) -> bool:
    return len(list(results.glob(model_folder_name("*", model.configuration_name)))) == 1


def _ensemble_candidates(results: Path, singles: list[Candidate], folds: list[str]) -> list[Candidate]:
    usable = [c for c in singles if has_probabilities(c.model_folders[0], folds, [p.case for p in c.pairs])]
    for candidate in singles:
        if candidate not in usable:
            log.info("No ensembles with %s: its validation folders hold no probabilities (.npz).", candidate.name)
    out = []
    for first, second in itertools.combinations(usable, 2):
        cases = {p.case: p for p in first.pairs}
        if set(cases) != {p.case for p in second.pairs}:
            log.warning("Not ensembling %s and %s: different validation cases.", first.name, second.name)
            continue
        name = f"ensemble__{first.name}__{second.name}"
        folder = results / "ensembles" / f"{name}__folds_{'_'.join(folds)}"
        fold_of = {p.case: p.prediction.parent for p in first.pairs}
        other_of = {p.case: p.prediction.parent for p in second.pairs}
        pairs = []
        for case, pair in sorted(cases.items()):
            probabilities, description = ensemble_case([fold_of[case], other_of[case]], case)
            segmentation = probabilities_to_segmentation(probabilities, description.label_info.regions_class_order)
            path = write_segmentation(folder, case, segmentation, description.geometry, description.file_ending)
            pairs.append(CasePair(case, pair.reference, path))
        out.append(Candidate(name, first.configurations + second.configurations,
                             first.model_folders + second.model_folders, folder, pairs))
    return out


def _information(
    dataset: str, folds: list[str], candidates: list[Candidate], best: Candidate, rules: dict[str, Any],
    rules_path: Path,
) -> dict[str, Any]:
    fold_args = " ".join(folds)
    commands = []
    if len(best.configurations) == 1:
        commands.append(f"autosegnet predict -d {dataset} -c {best.configurations[0]} -f {fold_args} "
                        f"-i INPUT_FOLDER -o OUTPUT_FOLDER")
    else:
        outputs = []
        for configuration in best.configurations:
            outputs.append(f"OUTPUT_FOLDER_{configuration}")
            commands.append(f"autosegnet predict -d {dataset} -c {configuration} -f {fold_args} -i INPUT_FOLDER "
                            f"-o {outputs[-1]} --save-probabilities --disable-postprocessing")
        commands.append(f"autosegnet ensemble -i {' '.join(outputs)} -o OUTPUT_FOLDER_ENSEMBLE")
        if rules["steps"]:
            commands.append(f"autosegnet postprocess apply -i OUTPUT_FOLDER_ENSEMBLE -o OUTPUT_FOLDER "
                            f"--rules {rules_path}")
    return {
        "dataset": dataset,
        "folds": folds,
        "ranking": [
            {"name": c.name, "configurations": c.configurations, "foreground_dice": c.foreground_dice,
             "summary": str(c.folder / SUMMARY_FILE)}
            for c in sorted(candidates, key=lambda c: -c.foreground_dice)
        ],
        "best": {"name": best.name, "configurations": best.configurations, "foreground_dice": best.foreground_dice},
        "postprocessing": {"file": str(rules_path), "steps": rules["steps"],
                           "foreground_dice_after": rules["dice_after"]["foreground_mean"]},
        "commands": commands,
    }

