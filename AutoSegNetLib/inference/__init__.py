"""Prediction with trained models: sliding window, test-time mirroring, fold ensembles, cascade, files.

Entry points:
- :func:`sliding_window_predict` (pure: network(s) + image tensor + :class:`SlidingWindowSettings` ->
  ``(K, Z, Y, X)``), :class:`SlidingWindowInferer` (the settings bound once; ``SlidingWindowSettings.for_model``
  derives them from a model folder), with the pure helpers :func:`compute_steps` and :func:`gaussian_importance_map`;
- :class:`Predictor` (``Predictor.from_model_folder(folder).predict(image, geometry)``, in memory);
- :func:`predict_files` (folders of image files, what ``autosegnet predict`` runs);
- :func:`ensemble_folders` (average stored probabilities of several prediction folders).
"""

from AutoSegNetLib.inference.compute import (
    PYTORCH_DEFAULT_COMPUTE,
    REFERENCE_COMPUTE,
    ComputeSettings,
    resolve_device,
)
from AutoSegNetLib.inference.ensemble import ensemble_folders
from AutoSegNetLib.inference.files import InputCase, list_input_cases, predict_files, select_part
from AutoSegNetLib.inference.labels import one_hot, probabilities_to_segmentation
from AutoSegNetLib.inference.model_folder import ModelFolder, find_model_folder
from AutoSegNetLib.inference.predictor import Prediction, Predictor
from AutoSegNetLib.inference.sliding_window import SlidingWindowInferer, SlidingWindowSettings, sliding_window_predict
from AutoSegNetLib.inference.tiles import compute_steps, gaussian_importance_map
from AutoSegNetLib.inference.uncertainty import disagreement, normalised_entropy
from AutoSegNetLib.layout import model_folder_name

__all__ = [
    "PYTORCH_DEFAULT_COMPUTE",
    "REFERENCE_COMPUTE",
    "ComputeSettings",
    "InputCase",
    "ModelFolder",
    "Prediction",
    "Predictor",
    "SlidingWindowInferer",
    "SlidingWindowSettings",
    "compute_steps",
    "disagreement",
    "ensemble_folders",
    "find_model_folder",
    "gaussian_importance_map",
    "list_input_cases",
    "model_folder_name",
    "normalised_entropy",
    "one_hot",
    "predict_files",
    "probabilities_to_segmentation",
    "resolve_device",
    "select_part",
    "sliding_window_predict",
]
