"""From probabilities to label maps, and label maps to one-hot input channels (cascade)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson


def label_dtype(max_value: int) -> np.dtype:
    """uint8 for labels up to 255, else uint16 (up to 65535)."""
    if max_value < 256:
        return np.dtype(np.uint8)
    if max_value < 65536:
        return np.dtype(np.uint16)
    raise ValueError(f"Label value {max_value} does not fit in uint16.")


def probabilities_to_segmentation(
    probabilities: np.ndarray, regions_class_order: Sequence[int] | None = None
) -> np.ndarray:
    """Label map ``(Z, Y, X)`` (uint8/uint16) from probabilities ``(K, Z, Y, X)``.

    Softmax classes: the arg-max (channel ``k`` is label value ``k``; ties go to the lower label). Sigmoid
    regions (``regions_class_order`` given): each region whose probability is above 0.5 writes its value, in
    order, so later regions overwrite earlier ones (nnU-Net's convention).
    """
    if regions_class_order is None:
        dtype = label_dtype(probabilities.shape[0] - 1)
        return np.argmax(probabilities, axis=0).astype(dtype)
    if len(regions_class_order) != probabilities.shape[0]:
        raise ValueError(
            f"regions_class_order has {len(regions_class_order)} values for {probabilities.shape[0]} region channels."
        )
    segmentation = np.zeros(probabilities.shape[1:], dtype=label_dtype(max(regions_class_order, default=0)))
    for channel, value in enumerate(regions_class_order):
        segmentation[probabilities[channel] > 0.5] = value
    return segmentation


def one_hot(segmentation: np.ndarray, values: Sequence[int], dtype: np.dtype = np.float32) -> np.ndarray:
    """``(len(values), *S)`` with channel ``i`` equal to 1 where ``segmentation == values[i]``; other values
    (background, ``-1`` outside the crop) give all-zero channels."""
    out = np.zeros((len(values), *segmentation.shape), dtype=dtype)
    for channel, value in enumerate(values):
        out[channel][segmentation == value] = 1
    return out


def cascade_label_values(dataset_json: DatasetJson) -> list[int]:
    """Label values a cascade stage receives as one-hot input channels, in channel order: every declared label
    value except background (0) and the ignore label (nnU-Net's ``foreground_labels``; for regions these are the
    label values, not the regions). The one owner of this list: training and prediction both read it."""
    ignore = dataset_json.ignore_label
    return [v for v in dataset_json.label_values if v not in (0, ignore)]
