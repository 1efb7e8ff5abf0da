"""Preprocessing: crop, normalise, resample (and the exact inverse for prediction).

- :func:`preprocess_case` — one case in memory (used by prediction and by the dataset stage);
- :func:`revert_probabilities` / :func:`revert_segmentation` — network output back to the raw case;
- :func:`preprocess_dataset` — the incremental stage writing ``preprocessed/<Dataset>/<data_identifier>/``;
- :mod:`~AutoSegNetLib.preprocessing.normalization` (``NORMALIZATIONS`` registry) and
  :mod:`~AutoSegNetLib.preprocessing.resampling` (pure functions);
- :mod:`~AutoSegNetLib.preprocessing.storage` — the on-disk format read by training.
"""

from AutoSegNetLib.preprocessing import normalization, resampling
from AutoSegNetLib.preprocessing.case import (
    geometry_from_properties,
    preprocess_case,
    revert_probabilities,
    revert_segmentation,
    target_spacing,
)
from AutoSegNetLib.preprocessing.normalization import NORMALIZATIONS, normalization_for
from AutoSegNetLib.preprocessing.preprocess_dataset import preprocess_dataset
from AutoSegNetLib.preprocessing.storage import PreprocessedDataset, save_case

__all__ = [
    "NORMALIZATIONS",
    "PreprocessedDataset",
    "geometry_from_properties",
    "normalization",
    "normalization_for",
    "preprocess_case",
    "preprocess_dataset",
    "resampling",
    "revert_probabilities",
    "revert_segmentation",
    "save_case",
    "target_spacing",
]
