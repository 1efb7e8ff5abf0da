"""One case in memory: raw arrays -> network input (crop, normalise, resample), and the exact way back.

Order of operations (nnU-Net's): transpose (``plans.transpose_forward``) -> crop to the non-zero box ->
normalise each channel -> resample to the configuration's spacing. The properties returned record every
number needed to undo it (:func:`revert_probabilities`, :func:`revert_segmentation`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.preprocessing.class_locations import sample_class_locations
from AutoSegNetLib.preprocessing.cropping import crop_to_nonzero, slices_of, uncrop
from AutoSegNetLib.preprocessing.memory import check_memory, estimate_case_bytes
from AutoSegNetLib.preprocessing.normalization import normalize
from AutoSegNetLib.preprocessing.resampling import (
    compute_new_shape,
    label_values_in,
    resample_image,
    resample_probabilities,
    resample_seg,
)

PROPERTIES_FORMAT = "autosegnet-preprocessed-case"
PROPERTIES_VERSION = 1


def preprocess_case(image: np.ndarray, seg: np.ndarray | None, geometry: Geometry, plans: Plans,
                    configuration: ConfigurationPlan, dataset_json: DatasetJson, input_hash: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Preprocess one raw case for ``configuration``.

    ``image`` is ``(C, Z, Y, X)`` (any real dtype), ``seg`` ``(Z, Y, X)`` integers or None, ``geometry`` the
    image's :class:`Geometry`. Returns ``data`` ``(C, z, y, x)`` float32 and ``seg`` ``(1, z, y, x)`` int16 (-1
    = background outside the non-zero region) in the transposed axis order at the target spacing, and
    JSON-serialisable properties (``class_locations`` as lists of ``[c, z, y, x]``). ``input_hash`` names the
    input (e.g. a hash of its files); by default the arrays and geometry are hashed.
    """
    data, seg_out, properties, locations = preprocess_case_arrays(image, seg, geometry, plans, configuration,
                                                                  dataset_json, input_hash)
    if locations is not None:
        properties["class_locations"] = {key: value.tolist() for key, value in locations.items()}
    return data, seg_out, properties


def preprocess_case_arrays(image: np.ndarray, seg: np.ndarray | None, geometry: Geometry, plans: Plans,
                           configuration: ConfigurationPlan, dataset_json: DatasetJson,
                           input_hash: str | None = None, what: str = "the case"
                           ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any], dict[str, np.ndarray] | None]:
    """Like :func:`preprocess_case`, but class locations come back separately as ``{key: (n, 4) int32}``."""
    image, seg = _checked_inputs(image, seg, plans, configuration, dataset_json, what)
    forward = list(plans.transpose_forward)
    spacing = [geometry.spacing[a] for a in forward]
    target = target_spacing(spacing, configuration)
    raw_shape = image.shape[1:]
    shape_t = tuple(raw_shape[a] for a in forward)
    check_memory(estimate_case_bytes(shape_t, compute_new_shape(shape_t, spacing, target), image.shape[0],
                                     seg is not None), f"Preprocessing {what} ({image.shape[0]} x {raw_shape} voxels)")
    properties: dict[str, Any] = {
        "format": PROPERTIES_FORMAT,
        "version": PROPERTIES_VERSION,
        "configuration": configuration.name,
        "input_hash": input_hash or hash_arrays(image, seg, geometry),
        "geometry": geometry_to_dict(geometry),
        "original_shape": list(raw_shape),
        "transpose_forward": forward,
        "shape_before_cropping": list(shape_t),
        "spacing": spacing,
    }
    image = image.transpose([0, *[a + 1 for a in forward]])
    seg = seg.transpose(forward) if seg is not None else None
    data, seg, mask, bbox = crop_to_nonzero(image, seg)
    del image
    properties["bbox"] = bbox
    properties["shape_after_cropping"] = list(data.shape[1:])
    data = data.astype(np.float32, copy=False)
    norm_mask = seg >= 0 if seg is not None else mask
    normalize(data, configuration.normalization_schemes, configuration.use_mask_for_norm, norm_mask,
              plans.foreground_intensity_properties)
    new_shape = compute_new_shape(data.shape[1:], spacing, target)
    r = configuration.resampling
    data = resample_image(data, new_shape, spacing, target, r.order_data, r.order_z_anisotropic,
                          r.anisotropy_threshold)
    properties["spacing_after_resampling"] = [float(s) for s in target]
    properties["shape_after_resampling"] = list(new_shape)
    locations = None
    if seg is not None:
        seg = resample_seg(seg, new_shape, spacing, target, r.order_seg, r.order_z_anisotropic,
                           r.anisotropy_threshold)[None]
        locations = sample_class_locations(seg, _location_targets(dataset_json))
    return data, seg, properties, locations


def target_spacing(spacing: Sequence[float], configuration: ConfigurationPlan) -> list[float]:
    """The spacing (mm, transposed order) a case is resampled to: 2D configurations keep the case's own
    out-of-plane spacing, ``[spacing[0], *configuration.spacing]``."""
    if len(configuration.spacing) == len(spacing):
        return [float(s) for s in configuration.spacing]
    if len(configuration.spacing) == len(spacing) - 1:
        return [float(spacing[0]), *(float(s) for s in configuration.spacing)]
    raise AutoSegNetError(
        f"Configuration {configuration.name!r} has spacing {configuration.spacing} for {len(spacing)}-axis images; "
        "expected 3 values (3D) or 2 (2D). Re-run `autosegnet plan`."
    )


def revert_probabilities(probs: np.ndarray, properties: dict[str, Any], plans: Plans,
                         configuration: ConfigurationPlan, regions: bool = False) -> np.ndarray:
    """Bring probabilities ``(K, z, y, x)`` at the network's spacing back to the raw case: ``(K, Z, Y, X)`` float32.

    Resamples to the cropped shape (order ``resampling.order_probabilities``, coarse axis separately when
    anisotropic), puts the crop back (outside: background probability 1 for softmax outputs, 0 everywhere
    for ``regions``) and transposes back with ``plans.transpose_backward``. Works for logits too, but the
    fill outside the crop is meant for probabilities.

    Memory: the result is allocated once, in the raw axis order, and filled class by class, so besides ``probs``
    and the result only one class at the cropped size is held at a time.
    """
    _check_network_shape(probs.shape[1:], properties)
    num_classes = probs.shape[0]
    full_shape = tuple(int(n) for n in properties["shape_before_cropping"])  # network axis order
    cropped_shape = tuple(int(n) for n in properties["shape_after_cropping"])
    check_memory(int((num_classes * np.prod(full_shape) + np.prod(cropped_shape)) * 4),
                 f"Reverting {num_classes} probability maps to the original image size")
    backward = list(plans.transpose_backward)
    out = np.empty((num_classes, *(full_shape[a] for a in backward)), dtype=np.float32)
    in_network_order = out.transpose([0, *(int(a) + 1 for a in np.argsort(backward))])  # a view of ``out``
    inside = slices_of(properties["bbox"])
    r = configuration.resampling
    for k in range(num_classes):
        in_network_order[k] = 1.0 if k == 0 and not regions else 0.0
        in_network_order[k][inside] = resample_probabilities(
            probs[k : k + 1], cropped_shape, properties["spacing_after_resampling"], properties["spacing"],
            r.order_probabilities, r.order_z_anisotropic, r.anisotropy_threshold,
        )[0]
    return out


def revert_segmentation(seg: np.ndarray, properties: dict[str, Any], plans: Plans,
                        configuration: ConfigurationPlan) -> np.ndarray:
    """Bring a label map ``(z, y, x)`` at the network's spacing back to the raw case ``(Z, Y, X)`` (int16).

    One-hot resampling (``resampling.order_seg``) to the cropped shape, background (0) outside the crop,
    transposed back with ``plans.transpose_backward``.
    """
    seg = np.asarray(seg)
    if seg.ndim == len(properties["shape_after_resampling"]) + 1 and seg.shape[0] == 1:
        seg = seg[0]
    _check_network_shape(seg.shape, properties)
    r = configuration.resampling
    seg = resample_seg(seg, properties["shape_after_cropping"], properties["spacing_after_resampling"],
                       properties["spacing"], r.order_seg, r.order_z_anisotropic, r.anisotropy_threshold)
    seg = np.maximum(seg, 0)
    full = uncrop(seg[None], properties["bbox"], tuple(properties["shape_before_cropping"]), 0)[0]
    return np.ascontiguousarray(full.transpose(plans.transpose_backward))


def geometry_to_dict(geometry: Geometry) -> dict[str, Any]:
    return {"spacing": list(geometry.spacing), "origin": list(geometry.origin),
            "direction": list(geometry.direction), "image_dim": geometry.image_dim}


def geometry_from_properties(properties: dict[str, Any]) -> Geometry:
    """The raw case's :class:`Geometry`, as recorded by preprocessing (to write results back)."""
    g = properties["geometry"]
    return Geometry(tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]), int(g["image_dim"]))


def hash_arrays(image: np.ndarray, seg: np.ndarray | None, geometry: Geometry) -> str:
    """Content hash of a case held in memory (arrays, dtypes, shapes and geometry)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (image, seg):
        if array is not None:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(memoryview(array).cast("B"))
    digest.update(repr(geometry_to_dict(geometry)).encode())
    return digest.hexdigest()


def _location_targets(dataset_json: DatasetJson) -> list[int | list[int]]:
    """Classes (label values) or regions (lists of values) whose positions training samples from."""
    return list(dataset_json.foreground_labels.values())


def _check_network_shape(shape: Sequence[int], properties: dict[str, Any]) -> None:
    expected = list(properties["shape_after_resampling"])
    if list(shape) != expected:
        raise AutoSegNetError(
            f"The prediction has spatial shape {list(shape)} but this case was preprocessed to {expected}; "
            "pass the prediction of the same case and configuration."
        )


def _checked_inputs(image: np.ndarray, seg: np.ndarray | None, plans: Plans, configuration: ConfigurationPlan,
                    dataset_json: DatasetJson, what: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate shapes, channel count, finiteness and label values; errors say which case and how to fix."""
    image = np.asarray(image)
    if image.ndim != 4:
        raise AutoSegNetError(f"{what}: the image must be (C, Z, Y, X), got shape {image.shape}.")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise AutoSegNetError(f"{what}: the image must hold real numbers, got dtype {image.dtype}.")
    if image.shape[0] != dataset_json.num_channels:
        raise AutoSegNetError(
            f"{what}: the image has {image.shape[0]} channels but dataset.json declares {dataset_json.num_channels} "
            f"({', '.join(dataset_json.channel_names.values())}); check the case's channel files (_0000, _0001, ...)."
        )
    if sorted(plans.transpose_forward) != [0, 1, 2] or sorted(plans.transpose_backward) != [0, 1, 2]:
        raise AutoSegNetError(f"plans.json: transpose_forward {plans.transpose_forward} / transpose_backward "
                              f"{plans.transpose_backward} must be permutations of [0, 1, 2].")
    if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        raise AutoSegNetError(f"{what}: the image contains NaN or infinite values; fix or replace them in the file.")
    if seg is None:
        return image, None
    seg = np.asarray(seg)
    if seg.shape != image.shape[1:]:
        raise AutoSegNetError(f"{what}: the label map has shape {seg.shape} but the image has {image.shape[1:]}; "
                              "image and label must cover the same voxels.")
    if not np.issubdtype(seg.dtype, np.integer):
        if not np.array_equal(seg, np.round(seg)):
            raise AutoSegNetError(f"{what}: the label map holds non-integer values; save it as an integer image.")
        seg = seg.astype(np.int32)
    present = label_values_in(seg)
    unknown = sorted(set(present) - set(dataset_json.label_values))
    if unknown:
        raise AutoSegNetError(
            f"{what}: the label map contains values {unknown[:10]} that dataset.json does not declare "
            f"(declared: {dataset_json.label_values}). Add them to 'labels' or fix the label file."
        )
    return image, seg
