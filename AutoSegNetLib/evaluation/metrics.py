"""Overlap and surface-distance metrics of one label (or region) in one case.

Definitions (per label value, or per region = set of label values):

- ``TP``/``FP``/``FN``/``TN``: voxel counts, ignoring voxels whose reference is the ignore label;
  ``n_ref = TP + FN``, ``n_pred = TP + FP``.
- ``Dice = 2 TP / (2 TP + FP + FN)``, ``IoU = TP / (TP + FP + FN)``; both are NaN when reference and
  prediction are empty (nothing to compare), 0 when only one of them is.
- ``HD95``: the symmetric 95% Hausdorff distance in mm, ``max(P95(d(pred -> ref)), P95(d(ref -> pred)))`` over
  the surface voxels of each mask (surface = voxels with a 6-neighbour (4 in 2D) outside the mask or the
  image), distances measured with the voxel spacing by Euclidean distance transforms.
- ``ASSD``: the average symmetric surface distance in mm, the mean of the two directed mean distances.
- Both distances are NaN when either mask is empty (undefined: there is no surface to measure from).
  Axes of size 1 (2D images) are left out, so a 2D case is measured in the plane.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

OVERLAP_METRICS = ("Dice", "IoU", "TP", "FP", "FN", "TN", "n_ref", "n_pred")
DISTANCE_METRICS = ("HD95", "ASSD")


def region_mask(segmentation: np.ndarray, label_or_region: int | Sequence[int]) -> np.ndarray:
    """Boolean mask of one label value or of a region (any of several values)."""
    if isinstance(label_or_region, (list, tuple)):
        return np.isin(segmentation, list(label_or_region))
    return segmentation == label_or_region


def overlap_metrics(reference: np.ndarray, prediction: np.ndarray, valid: np.ndarray | None = None) -> dict[str, float]:
    """Counts, Dice and IoU of two boolean masks of the same shape (``valid`` restricts the voxels counted)."""
    if valid is not None:
        reference = reference & valid
        prediction = prediction & valid
    total = int(valid.sum()) if valid is not None else reference.size
    tp = int(np.count_nonzero(reference & prediction))
    n_ref = int(np.count_nonzero(reference))
    n_pred = int(np.count_nonzero(prediction))
    fp, fn = n_pred - tp, n_ref - tp
    tn = total - tp - fp - fn
    denominator = tp + fp + fn
    return {
        "Dice": 2 * tp / (2 * tp + fp + fn) if denominator else math.nan,
        "IoU": tp / denominator if denominator else math.nan,
        "TP": tp, "FP": fp, "FN": fn, "TN": tn, "n_ref": n_ref, "n_pred": n_pred,
    }


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image border counts as outside)."""
    if not mask.any():
        return mask.copy()
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def directed_surface_distances(
    reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each prediction surface voxel to the reference surface, and the other way round.

    ``spacing`` is per axis of the masks (array order, mm). Axes of size 1 are dropped first. Only the
    bounding box of both masks is transformed, which gives the same distances.
    """
    keep = [axis for axis, size in enumerate(reference.shape) if size > 1] or [0]
    shape = [reference.shape[a] for a in keep]
    reference = reference.reshape(shape)
    prediction = prediction.reshape(shape)
    spacing = [float(spacing[a]) for a in keep]
    box = _bounding_box(reference | prediction)
    ref_surface = surface(reference[box])
    pred_surface = surface(prediction[box])
    to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)
    return to_ref[pred_surface], to_pred[ref_surface]


def distance_metrics(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """``HD95`` and ``ASSD`` in mm of two boolean masks; NaN when either is empty."""
    if not reference.any() or not prediction.any():
        return {"HD95": math.nan, "ASSD": math.nan}
    pred_to_ref, ref_to_pred = directed_surface_distances(reference, prediction, spacing)
    hd95 = max(float(np.percentile(pred_to_ref, 95)), float(np.percentile(ref_to_pred, 95)))
    assd = (float(pred_to_ref.mean()) + float(ref_to_pred.mean())) / 2
    return {"HD95": hd95, "ASSD": assd}


def case_metrics(
    reference: np.ndarray,
    prediction: np.ndarray,
    labels_or_regions: Sequence[int | Sequence[int]],
    spacing: Sequence[float],
    ignore_label: int | None = None,
    distances: bool = True,
) -> dict[str, dict[str, float]]:
    """Metrics per label/region of one case, keyed by :func:`label_key`.

    ``reference`` and ``prediction`` are label maps of the same shape; ``spacing`` in mm per array axis.
    Voxels whose reference is ``ignore_label`` are left out of every count (and of the distances).
    """
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} differs from prediction shape {prediction.shape}")
    valid = reference != ignore_label if ignore_label is not None else None
    results = {}
    for item in labels_or_regions:
        ref_mask = region_mask(reference, item)
        pred_mask = region_mask(prediction, item)
        if valid is not None:
            ref_mask &= valid
            pred_mask &= valid
        metrics = overlap_metrics(ref_mask, pred_mask, valid)
        if distances:
            metrics.update(distance_metrics(ref_mask, pred_mask, spacing))
        results[label_key(item)] = metrics
    return results


def label_key(label_or_region: int | Sequence[int]) -> str:
    """``"1"`` for a label, ``"(1, 2)"`` for a region (nnU-Net's keys)."""
    if isinstance(label_or_region, (list, tuple)):
        return str(tuple(int(v) for v in label_or_region))
    return str(int(label_or_region))


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """The smallest box holding all True voxels, grown by one voxel so surfaces at its edge stay surfaces."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        box.append(slice(max(0, int(hits[0]) - 1), min(mask.shape[axis], int(hits[-1]) + 2)))
    return tuple(box)
