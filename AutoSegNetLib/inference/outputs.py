"""Files a prediction writes beside each other, per case, in an output folder.

- ``<case><ending>``: the label map, in the input image's geometry and file format;
- ``<case>.npz`` (key ``probabilities``, ``(K, Z, Y, X)`` float32) and ``<case>.json`` (geometry, labels, file
  ending: everything :mod:`AutoSegNetLib.inference.ensemble` needs to turn averaged probabilities into files);
- ``<case>_uncertainty<ending>``: the uncertainty map ``(Z, Y, X)`` float32 in ``[0, 1]`` (``.tif`` for
  natural-image datasets, whose PNG/JPEG/BMP files cannot hold fractions);
- ``prediction_info.json`` once per folder: the model and settings that produced the files.

:func:`case_outputs` lists these names per case (the one place that knows them all), so that ``predict`` can
check before it starts that no output would overwrite an input file or another output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.dataset.dataset_json import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio import Geometry, ImageIO, io_for
from AutoSegNetLib.layout import UNCERTAINTY_SUFFIX
from AutoSegNetLib.utils.atomic import atomic_path, read_json, write_json
from AutoSegNetLib.utils.os_errors import describe_os_error

PROBABILITIES_FORMAT = "autosegnet-probabilities"
PROBABILITIES_VERSION = 1
NATURAL_IMAGE_ENDINGS = (".png", ".bmp", ".gif", ".jpg", ".jpeg")
PREDICTION_INFO_NAME = "prediction_info.json"


@dataclass(frozen=True)
class LabelInfo:
    """What turns probabilities into a label map: label names/values and, for regions, the order."""

    labels: dict[str, Any]
    regions_class_order: list[int] | None

    @classmethod
    def of(cls, dataset_json: DatasetJson) -> LabelInfo:
        order = list(dataset_json.regions_class_order) if dataset_json.has_regions else None
        return cls(dict(dataset_json.labels), order)


def segmentation_path(folder: Path, case: str, ending: str) -> Path:
    return Path(folder) / f"{case}{ending}"


def uncertainty_path(folder: Path, case: str, ending: str) -> Path:
    ending = ".tif" if ending.lower() in NATURAL_IMAGE_ENDINGS else ending
    return Path(folder) / f"{case}{UNCERTAINTY_SUFFIX}{ending}"


def probabilities_paths(folder: Path, case: str) -> tuple[Path, Path]:
    """``(<case>.npz, <case>.json)``: the stored probabilities and their description."""
    return Path(folder) / f"{case}.npz", Path(folder) / f"{case}.json"


def case_outputs(folder: Path, case: str, ending: str, save_probabilities: bool = False,
                 uncertainty: bool = False) -> dict[Path, str]:
    """Every file predicting ``case`` writes into ``folder``, with what it is (for messages)."""
    outputs = {segmentation_path(folder, case, ending): f"the label map of case {case!r}"}
    if save_probabilities:
        npz, description = probabilities_paths(folder, case)
        outputs[npz] = f"the probabilities of case {case!r}"
        outputs[description] = f"the probabilities description of case {case!r}"
    if uncertainty:
        outputs[uncertainty_path(folder, case, ending)] = f"the uncertainty map of case {case!r}"
    return outputs


def cannot_write(folder: Path, error: OSError) -> AutoSegNetError:
    """The error for an output folder that cannot be written (permission, read-only, full disk, a file there)."""
    return AutoSegNetError(
        f"cannot write predictions to {folder}: {describe_os_error(error)} ({error.filename or folder}). Choose "
        "a folder you can write to with -o, or fix the folder's permissions or free space."
    )


def write_segmentation(folder: Path, case: str, segmentation: np.ndarray, geometry: Geometry, ending: str,
                       io: ImageIO | None = None) -> Path:
    """Write ``<case><ending>`` atomically; returns its path."""
    path = segmentation_path(folder, case, ending)
    io = io or io_for(ending)
    with atomic_path(path) as tmp:
        io.write_seg(segmentation, tmp, geometry)
    return path


def write_uncertainty(folder: Path, case: str, uncertainty: np.ndarray, geometry: Geometry, ending: str) -> Path:
    """Write the uncertainty map ``(Z, Y, X)`` as a float32 image beside the segmentation; returns its path."""
    path = uncertainty_path(folder, case, ending)
    with atomic_path(path) as tmp:
        io_for(path).write_image(np.asarray(uncertainty, dtype=np.float32), tmp, geometry)
    return path


def write_probabilities(folder: Path, case: str, probabilities: np.ndarray, geometry: Geometry, ending: str,
                        label_info: LabelInfo) -> Path:
    """Write ``<case>.npz`` (compressed) and its ``<case>.json`` description; returns the npz path."""
    path, description = probabilities_paths(folder, case)
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, probabilities=np.asarray(probabilities, dtype=np.float32))
    write_json(description, {
        "format": PROBABILITIES_FORMAT, "version": PROBABILITIES_VERSION, "case": case,
        "shape": list(probabilities.shape), "file_ending": ending,
        "geometry": {"spacing": list(geometry.spacing), "origin": list(geometry.origin),
                     "direction": list(geometry.direction), "image_dim": geometry.image_dim},
        "labels": label_info.labels, "regions_class_order": label_info.regions_class_order,
    })
    return path


@dataclass
class StoredProbabilities:
    """A case's probabilities as read back from ``<case>.npz`` + ``<case>.json``."""

    case: str
    probabilities: np.ndarray
    geometry: Geometry
    file_ending: str
    label_info: LabelInfo


def read_probabilities(folder: Path, case: str) -> StoredProbabilities:
    """Read ``<case>.npz`` and ``<case>.json`` written by :func:`write_probabilities`."""
    folder = Path(folder)
    npz, meta_path = probabilities_paths(folder, case)
    if not npz.is_file() or not meta_path.is_file():
        raise AutoSegNetError(
            f"{folder} has no probabilities for case {case!r} ({npz.name} + {meta_path.name}); predict with "
            "--save-probabilities."
        )
    meta = read_json(meta_path)
    if meta.get("format") != PROBABILITIES_FORMAT:
        raise AutoSegNetError(f"{meta_path} is not a probabilities description (format {PROBABILITIES_FORMAT!r}).")
    with np.load(npz) as data:
        probabilities = data["probabilities"].astype(np.float32, copy=False)
    if list(probabilities.shape) != list(meta["shape"]):
        raise AutoSegNetError(f"{npz}: shape {probabilities.shape} differs from {meta_path.name} ({meta['shape']}).")
    g = meta["geometry"]
    geometry = Geometry(tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]), int(g["image_dim"]))
    return StoredProbabilities(case, probabilities, geometry, meta["file_ending"],
                               LabelInfo(meta["labels"], meta.get("regions_class_order")))


def probability_cases(folder: Path) -> list[str]:
    """Cases with stored probabilities in ``folder``, sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.npz") if (Path(folder) / f"{p.stem}.json").is_file())
