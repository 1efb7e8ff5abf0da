"""Decide the postprocessing rules from cross-validation predictions and their references.

Determination (nnU-Net's order): first treat all foreground labels as one object and keep its largest
connected component; accept that if the mean foreground Dice over the cases goes up. Then, on top of that,
try it per label (or region) and accept each where that label's mean Dice goes up. The accepted steps form a
``postprocessing.json`` (see :mod:`AutoSegNetLib.postprocessing.rules`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.evaluate import CasePair, LabelSet
from AutoSegNetLib.evaluation.metrics import case_metrics, label_key
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.postprocessing.rules import (
    KEEP_LARGEST,
    POSTPROCESSING_FORMAT,
    POSTPROCESSING_VERSION,
    keep_largest_component,
)
from AutoSegNetLib.utils.workers import run_parallel


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
            "dice_before": before, "dice_after": after, "num_cases": len(per_case)}
