"""After prediction: metrics against references, connected-component postprocessing, choosing the best
configuration or ensemble from cross-validation.

Entry points: :func:`evaluate_folders` / :func:`evaluate_pairs` (``summary.json``), :func:`case_metrics`,
:func:`determine_postprocessing` / :func:`apply_postprocessing`, :func:`find_best_configuration`.
"""

from AutoSegNetLib.evaluation.evaluate import (
    CasePair,
    LabelSet,
    evaluate_folders,
    evaluate_pairs,
    labels_for,
    load_summary,
    pair_folders,
)
from AutoSegNetLib.evaluation.find_best import find_best_configuration
from AutoSegNetLib.evaluation.metrics import case_metrics, distance_metrics, overlap_metrics
from AutoSegNetLib.evaluation.postprocessing import (
    apply_postprocessing,
    apply_to_folder,
    determine_postprocessing,
    keep_largest_component,
)

__all__ = [
    "CasePair",
    "LabelSet",
    "apply_postprocessing",
    "apply_to_folder",
    "case_metrics",
    "determine_postprocessing",
    "distance_metrics",
    "evaluate_folders",
    "evaluate_pairs",
    "find_best_configuration",
    "keep_largest_component",
    "labels_for",
    "load_summary",
    "overlap_metrics",
    "pair_folders",
]
