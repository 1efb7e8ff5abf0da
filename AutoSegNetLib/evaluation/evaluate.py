"""Evaluate predicted label maps against references: per-case metrics, means, ``summary.json``.

Summary format (``"format": "autosegnet-evaluation"``)::

    {"labels": {"1": "Anterior", ...},            # key -> name
     "metric_per_case": [{"case", "reference_file", "prediction_file", "metrics": {key: {metric: value}}}],
     "mean": {key: {metric: mean over cases}},     # NaN-ignoring means
     "foreground_mean": {metric: mean over labels of "mean"}}

Undefined values (NaN, see :mod:`AutoSegNetLib.evaluation.metrics`) are written as JSON ``null``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.evaluation.metrics import DISTANCE_METRICS, OVERLAP_METRICS, case_metrics, label_key
from AutoSegNetLib.imageio import file_ending, io_for
from AutoSegNetLib.layout import SUMMARY_FILE, UNCERTAINTY_SUFFIX
from AutoSegNetLib.progress import ProgressReporter
from AutoSegNetLib.utils.atomic import read_json, write_json
from AutoSegNetLib.utils.workers import run_parallel

SUMMARY_FORMAT = "autosegnet-evaluation"
SUMMARY_VERSION = 1


@dataclass(frozen=True)
class CasePair:
    """One case to evaluate: its name, reference file and prediction file."""

    case: str
    reference: Path
    prediction: Path


@dataclass(frozen=True)
class LabelSet:
    """What to evaluate: label values or regions, their names, and the ignore label."""

    items: tuple[int | tuple[int, ...], ...]
    names: dict[str, str]
    ignore_label: int | None = None

    @classmethod
    def from_dataset_json(cls, dataset_json: DatasetJson, regions: bool | None = None) -> LabelSet:
        """Foreground labels (or regions, if the dataset has them or ``regions`` is True)."""
        use_regions = dataset_json.has_regions if regions is None else regions
        items, names = [], {}
        for name, value in dataset_json.foreground_labels.items():
            item: int | tuple[int, ...] = tuple(value) if isinstance(value, list) else int(value)
            if use_regions and isinstance(item, int):
                item = (item,)
            items.append(item)
            names[label_key(item)] = name
        return cls(tuple(items), names, dataset_json.ignore_label)

    @classmethod
    def from_values(cls, values: Sequence[int | Sequence[int]], ignore_label: int | None = None) -> LabelSet:
        items = tuple(tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v) for v in values)
        return cls(items, {label_key(i): label_key(i) for i in items}, ignore_label)


def pair_folders(reference_folder: Path, prediction_folder: Path, ending: str | None = None) -> list[CasePair]:
    """Pair every prediction file with the reference file of the same name.

    ``ending`` defaults to the most common image ending among the prediction files. Uncertainty maps
    (``*_uncertainty<ending>``) are skipped; a prediction without a reference is an error.
    """
    reference_folder, prediction_folder = Path(reference_folder), Path(prediction_folder)
    for folder in (reference_folder, prediction_folder):
        if not folder.is_dir():
            raise AutoSegNetError(f"{folder} is not a folder.")
    ending = ending or common_ending(prediction_folder)
    pairs = []
    for case, prediction in label_map_files(prediction_folder, ending):
        reference = reference_folder / prediction.name
        if not reference.is_file():
            raise AutoSegNetError(
                f"Prediction {prediction} has no reference {reference}. Evaluate only cases that have references."
            )
        pairs.append(CasePair(case, reference, prediction))
    if not pairs:
        raise AutoSegNetError(f"No predictions ending in {ending!r} in {prediction_folder}.")
    return pairs


def evaluate_case(pair: CasePair, labels: LabelSet, distances: bool = True) -> dict[str, Any]:
    """Metrics of one case (reads both files; spacing from the reference)."""
    io = io_for(pair.reference)
    reference, geometry = io.read_seg(pair.reference)
    prediction, _ = io_for(pair.prediction).read_seg(pair.prediction)
    if reference.shape != prediction.shape:
        raise AutoSegNetError(
            f"Case {pair.case}: prediction {pair.prediction} has shape {prediction.shape}, reference {pair.reference} "
            f"has {reference.shape}; they must cover the same voxels."
        )
    metrics = case_metrics(reference, prediction, labels.items, geometry.spacing, labels.ignore_label, distances)
    return {"case": pair.case, "reference_file": str(pair.reference), "prediction_file": str(pair.prediction),
            "metrics": metrics}


def evaluate_pairs(
    pairs: Sequence[CasePair],
    labels: LabelSet,
    distances: bool = True,
    num_workers: int = 1,
    reporter: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Evaluate all pairs and summarise (see the module docstring); cases keep the order of ``pairs``."""
    work = functools.partial(evaluate_case, labels=labels, distances=distances)
    results = {}
    for index, (pair, result) in enumerate(run_parallel(work, pairs, num_workers, lambda p: p.case)):
        results[pair.case] = result
        if reporter is not None:
            reporter.emit("case", stage="evaluate", case=pair.case, index=index + 1, total=len(pairs))
    return summarise([results[p.case] for p in pairs], labels)


def summarise(per_case: list[dict[str, Any]], labels: LabelSet) -> dict[str, Any]:
    """Means over cases (NaN-ignoring) and the foreground mean over labels."""
    keys = [label_key(item) for item in labels.items]
    if not per_case:
        raise AutoSegNetError("No cases to summarise.")
    first = per_case[0]["metrics"][keys[0]]
    metric_names = [m for m in (*OVERLAP_METRICS, *DISTANCE_METRICS) if m in first]
    mean = {key: {m: _nanmean([c["metrics"][key][m] for c in per_case]) for m in metric_names} for key in keys}
    foreground = {m: _nanmean([mean[key][m] for key in keys]) for m in metric_names}
    return {
        "format": SUMMARY_FORMAT,
        "version": SUMMARY_VERSION,
        "labels": {key: labels.names.get(key, key) for key in keys},
        "ignore_label": labels.ignore_label,
        "num_cases": len(per_case),
        "foreground_mean": foreground,
        "mean": mean,
        "metric_per_case": per_case,
    }


def evaluate_folders(
    reference_folder: str | Path,
    prediction_folder: str | Path,
    labels: LabelSet,
    output: str | Path | None = None,
    ending: str | None = None,
    distances: bool = True,
    num_workers: int = 1,
    reporter: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Evaluate a folder of predictions against a folder of references; writes ``summary.json``
    (default: in the prediction folder) and returns the summary."""
    pairs = pair_folders(Path(reference_folder), Path(prediction_folder), ending)
    summary = evaluate_pairs(pairs, labels, distances, num_workers, reporter)
    save_summary(Path(output) if output else Path(prediction_folder) / SUMMARY_FILE, summary)
    return summary


def save_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write a summary with NaN as ``null``."""
    write_json(path, _nan_to_none(summary))


def load_summary(path: str | Path) -> dict[str, Any]:
    """Read a summary written by :func:`save_summary` (``null`` metrics become NaN)."""
    return _none_to_nan(read_json(path))


def labels_for(dataset_json: DatasetJson | None, values: Sequence[int] | None, regions: bool) -> LabelSet:
    """The labels to evaluate from ``-l`` values, or else from dataset.json (regions with ``regions``)."""
    if values:
        ignore = dataset_json.ignore_label if dataset_json is not None else None
        return LabelSet.from_values(values, ignore)
    if dataset_json is None:
        raise AutoSegNetError("Say which labels to evaluate: pass -l 1 2 ... or --dataset-json dataset.json.")
    if regions and not dataset_json.has_regions:
        raise AutoSegNetError(f"--regions: {dataset_json.source} defines no regions (labels that are lists of values).")
    return LabelSet.from_dataset_json(dataset_json, regions or None)


def label_map_files(folder: Path, ending: str) -> list[tuple[str, Path]]:
    """``(case, path)`` of the label maps ``<case><ending>`` in ``folder``, sorted by name; uncertainty maps
    (``<case>_uncertainty<ending>``) and hidden files are left out."""
    found = []
    for path in sorted(Path(folder).glob(f"*{ending}")):
        case = path.name[: -len(ending)]
        if not case.endswith(UNCERTAINTY_SUFFIX) and not case.startswith("."):
            found.append((case, path))
    return found


def common_ending(folder: Path) -> str:
    counts: dict[str, int] = {}
    for path in folder.iterdir():
        if path.is_file() and not path.name.startswith("."):
            ending = file_ending(path)
            if ending not in (".json", ".npz", ".npy", ".txt", ".pkl"):
                counts[ending] = counts.get(ending, 0) + 1
    if not counts:
        raise AutoSegNetError(f"No image files in {folder}.")
    return max(counts, key=counts.get)


def _nanmean(values: list[float]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def _none_to_nan(value: Any, key: str = "") -> Any:
    if value is None and key in (*OVERLAP_METRICS, *DISTANCE_METRICS):
        return math.nan
    if isinstance(value, dict):
        return {k: _none_to_nan(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return value


__all__ = [
    "CasePair", "LabelSet", "evaluate_case", "evaluate_folders", "evaluate_pairs",
    "labels_for", "load_summary", "pair_folders", "save_summary", "summarise",
]
