"""Connected-component postprocessing: keep the largest component, only where it improves cross-validation Dice.

Determination (nnU-Net's order): first treat all foreground labels as one object and keep its largest
connected component; accept that if the mean foreground Dice over the cases goes up. Then, on top of that,
try it per label (or region) and accept each where that label's mean Dice goes up. Components are connected
through faces, edges and corners (full connectivity). The accepted steps are written to ``postprocessing.json``::

    {"format": "autosegnet-postprocessing", "version": 1,
     "steps": [{"operation": "keep_largest_component", "labels": [1, 2]}, ...],
     "dice_before": {"foreground_mean": ..., "1": ...}, "dice_after": {...}, "num_cases": n}
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import CasePair, LabelSet
from AutoSegNetLib.evaluation.metrics import case_metrics, label_key
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.utils.workers import run_parallel

POSTPROCESSING_FORMAT = "autosegnet-postprocessing"
POSTPROCESSING_VERSION = 1
KEEP_LARGEST = "keep_largest_component"


def keep_largest_component(segmentation: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    """Copy of ``segmentation`` where voxels with a value in ``labels`` that are outside the largest connected
    component of those voxels become background (0)."""
    mask = np.isin(segmentation, list(labels))
    out = segmentation.copy()
    if not mask.any():
        return out
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    components, count = ndimage.label(mask, structure=structure)
    if count > 1:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[mask & (components != int(np.argmax(sizes)))] = 0
    return out


def apply_postprocessing(segmentation: np.ndarray, rules: dict[str, Any]) -> np.ndarray:
    """Apply the steps of a ``postprocessing.json`` to a label map ``(Z, Y, X)``."""
    check_rules(rules)
    for step in rules["steps"]:
        segmentation = keep_largest_component(segmentation, step["labels"])
    return segmentation


def check_rules(rules: dict[str, Any], source: str = "postprocessing.json") -> None:
    """Raise a clear error for a postprocessing file this engine cannot apply."""
    if not isinstance(rules, dict) or rules.get("format") != POSTPROCESSING_FORMAT:
        raise AutoSegNetError(f"{source} is not an AutoSegNet postprocessing file (format {POSTPROCESSING_FORMAT!r}).")
    if rules.get("version") != POSTPROCESSING_VERSION:
        raise AutoSegNetError(
            f"{source}: version {rules.get('version')!r} is not supported (this engine reads {POSTPROCESSING_VERSION})."
        )
    for index, step in enumerate(rules.get("steps", [])):
        if step.get("operation") != KEEP_LARGEST or not isinstance(step.get("labels"), list):
            raise AutoSegNetError(f"{source}: step {index} {step!r} is not a known postprocessing step.")


def candidate_steps(labels: LabelSet) -> tuple[list[int], list[list[int]]]:
    """The all-foreground label values and the values of each label/region, as steps would list them."""
    per_item = [list(item) if isinstance(item, tuple) else [int(item)] for item in labels.items]
    foreground = sorted({v for values in per_item for v in values})
    return foreground, per_item


def _variant_dice(pair: CasePair, labels: LabelSet) -> dict[str, dict[str, float]]:
    """Dice per label for the prediction as is, with all-foreground LCC, and with per-label LCC on both."""
    reference, geometry = io_for(pair.reference).read_seg(pair.reference)
    prediction, _ = io_for(pair.prediction).read_seg(pair.prediction)
    foreground, per_item = candidate_steps(labels)
    bases = {"base": prediction, "fg": keep_largest_component(prediction, foreground)}
    variants = dict(bases)
    for index, values in enumerate(per_item):
        for name, base in bases.items():
            variants[f"{name}+{index}"] = keep_largest_component(base, values)

    def dice(segmentation: np.ndarray) -> dict[str, float]:
        metrics = case_metrics(reference, segmentation, labels.items, geometry.spacing, labels.ignore_label, False)
        return {key: values["Dice"] for key, values in metrics.items()}

    return {name: dice(segmentation) for name, segmentation in variants.items()}


def determine_postprocessing(pairs: Sequence[CasePair], labels: LabelSet, num_workers: int = 1) -> dict[str, Any]:
    """Decide the postprocessing steps from cross-validation predictions and their references."""
    if not pairs:
        raise AutoSegNetError("Determining postprocessing needs cross-validation predictions; none were found.")
    work = functools.partial(_variant_dice, labels=labels)
    per_case = [result for _, result in run_parallel(work, pairs, num_workers, lambda p: p.case)]
    keys = [label_key(item) for item in labels.items]

    def mean(variant: str, key: str) -> float:
        values = [c[variant][key] for c in per_case if not math.isnan(c[variant][key])]
        return float(np.mean(values)) if values else math.nan

    def foreground_mean(variant: str) -> float:
        return float(np.nanmean([mean(variant, key) for key in keys]))

    foreground, per_item = candidate_steps(labels)
    steps, state = [], "base"
    if foreground_mean("fg") > foreground_mean("base"):
        steps.append({"operation": KEEP_LARGEST, "labels": foreground})
        state = "fg"
    before = {"foreground_mean": foreground_mean("base"), **{key: mean("base", key) for key in keys}}
    after = {key: mean(state, key) for key in keys}
    for index, (key, values) in enumerate(zip(keys, per_item)):
        candidate = mean(f"{state}+{index}", key)
        if candidate > after[key]:
            steps.append({"operation": KEEP_LARGEST, "labels": values})
            after[key] = candidate
    after = {"foreground_mean": float(np.nanmean(list(after.values()))), **after}
    return {"format": POSTPROCESSING_FORMAT, "version": POSTPROCESSING_VERSION, "steps": steps,
            "dice_before": before, "dice_after": after, "num_cases": len(per_case)}  # fmt: skip


def apply_to_folder(input_folder: str | Path, output_folder: str | Path, rules: dict[str, Any],
                    ending: str | None = None) -> list[Path]:  # fmt: skip
    """Apply ``rules`` to every label map in ``input_folder`` and write them (same names, same geometry) to
    ``output_folder``; stored probabilities and uncertainty maps are not copied."""
    from AutoSegNetLib.evaluation.evaluate import UNCERTAINTY_SUFFIX, common_ending
    from AutoSegNetLib.inference.outputs import write_segmentation

    check_rules(rules)
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    if not input_folder.is_dir():
        raise AutoSegNetError(f"Input folder {input_folder} does not exist.")
    ending = ending or common_ending(input_folder)
    written = []
    for path in sorted(input_folder.glob(f"*{ending}")):
        case = path.name[: -len(ending)]
        if case.endswith(UNCERTAINTY_SUFFIX) or case.startswith("."):
            continue
        io = io_for(path)
        segmentation, geometry = io.read_seg(path)
        written.append(write_segmentation(output_folder, case, apply_postprocessing(segmentation, rules), geometry,
                                          ending, io))  # fmt: skip
    return written
