"""After prediction: metrics against references and choosing the best configuration or ensemble from
cross-validation.

Entry points: :func:`evaluate_folders` / :func:`evaluate_pairs` (``summary.json``), :func:`case_metrics`,
:func:`AutoSegNetLib.evaluation.find_best.find_best_configuration`. Postprocessing lives in its own stage,
:mod:`AutoSegNetLib.postprocessing`. ``find_best`` is not re-exported here: it imports the postprocessing stage,
which imports this package's metrics, and re-exporting it would make that a cycle.
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
from AutoSegNetLib.evaluation.metrics import case_metrics, distance_metrics, overlap_metrics

__all__ = [
    "CasePair",
    "LabelSet",
    "case_metrics",
    "distance_metrics",
    "evaluate_folders",
    "evaluate_pairs",
    "labels_for",
    "load_summary",
    "overlap_metrics",
    "pair_folders",
]
