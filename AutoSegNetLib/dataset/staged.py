"""Staged cases: raw arrays written quickly by a caller that must not block (3D Slicer's GUI thread), for the
engine to turn into a raw dataset in the background (:func:`~AutoSegNetLib.dataset.import_staged.import_staged`).

A staging folder holds one dataset's pending export:

- ``cases/<case>/case.json`` and the ``.npy`` files it lists. The arrays are written first (each under a
  temporary name, then renamed; in chunks if the caller wants, :class:`StagedCaseWriter`), ``case.json`` last and
  atomically, so a case folder without a valid ``case.json``, or whose listed files are missing or have another
  size, is a partial write and is never used. File names carry a random token per write, so a newer write never
  mixes with an older one;
- ``export.json`` (:class:`ExportManifest`): the whole training set (case names with their stamps, label table,
  channel names, file ending, the caller's warnings), written when every changed case is staged;
- ``imported.json``: ``{case: stamp}`` of what the raw dataset holds after the last import (written by the engine),
  so the caller can tell unchanged cases without reading their voxels.

A *stamp* is an opaque string the caller computes cheaply for a case's content (node modification times,
geometry, label table); equal stamps mean equal content. The engine only compares them.

Arrays: channel images ``(Z, Y, X)`` in their stored type. The label map is staged as *layers* plus an ordered list
of ``(layer, value in the layer, label value)`` (:mod:`AutoSegNetLib.dataset.staged_label`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from AutoSegNetLib.dataset.staged_label import LABEL_DTYPES, LabelLayer, compose_label
from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError
from AutoSegNetLib.imageio import Geometry
from AutoSegNetLib.utils.atomic import read_json, write_json

log = logging.getLogger(__name__)

FORMAT = 1
CASES_FOLDER = "cases"
CASE_FILE = "case.json"
EXPORT_FILE = "export.json"
IMPORTED_FILE = "imported.json"


def content_hash(images: Sequence[np.ndarray], label: np.ndarray, geometry: Geometry, labels: dict[str, int]) -> str:
    """SHA-1 of a case's content: geometry, the label table ``{name: value}`` and every array (type, shape, bytes).

    Recorded in dataset.json (``autosegnet.case_hashes``) to skip rewriting unchanged cases.
    """
    digest = hashlib.sha1()
    meta = {"geometry": [geometry.spacing, geometry.origin, geometry.direction], "labels": dict(labels)}
    digest.update(json.dumps(meta).encode())
    for array in [*images, label]:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # the bytes, without a copy
    return digest.hexdigest()


# ----- one staged case ------------------------------------------------------------------------------------
@dataclass
class StagedCase:
    """A validated ``case.json`` and its files (arrays are read on demand)."""

    folder: Path
    name: str
    stamp: str
    token: str
    geometry: Geometry
    shape: tuple[int, int, int]
    image_files: list[str]
    layers: list[dict]  # {"file", "bytes", "offset"}
    values: list[tuple[int, int, int]]  # (layer index, value in the layer, label value), painted in order
    label_dtype: str
    labels: dict[str, int]

    def load_images(self) -> list[np.ndarray]:
        """Channel images ``(Z, Y, X)`` in their stored type."""
        return [_load(self.folder / name, self.shape) for name in self.image_files]

    def load_label(self) -> np.ndarray:
        """The label map ``(Z, Y, X)`` with the table's values."""
        layers = [LabelLayer(_load(self.folder / layer["file"]), tuple(layer["offset"])) for layer in self.layers]
        return compose_label(self.shape, self.label_dtype, layers, self.values)

    @property
    def files(self) -> list[Path]:
        return [self.folder / name for name in [*self.image_files, *(layer["file"] for layer in self.layers)]]


class StagedCaseWriter:
    """Stage one case in ``folder``, at most ``chunk_bytes`` of array data per :meth:`write_next` call, so that a
    caller on a GUI thread can process events in between (a GUI timer calls it until it returns False).

    ``images``: channel arrays ``(Z, Y, X)`` on one grid; ``layers``/``values``: the label map, see
    :func:`compose_label`; ``labels``: the label table it was made with. The arrays are read while writing, so they
    must stay unchanged until the last call (views of memory a caller may change: check that afterwards, and
    :meth:`abort` and stage again if it changed). Each array goes to a temporary file renamed when complete;
    ``case.json`` is written last (atomically) and older files of the case are then deleted.
    """

    def __init__(self, folder: Path, name: str, stamp: str, images: Sequence[np.ndarray], geometry: Geometry,
                 layers: Sequence[LabelLayer], values: Sequence[tuple[int, int, int]], label_dtype: str,
                 labels: dict[str, int], chunk_bytes: int = 1 << 62) -> None:
        shape = tuple(int(s) for s in images[0].shape) if images else None
        if not images or any(image.ndim != 3 or image.shape != shape for image in images):
            raise ValueError(f"{name}: channel images must be (Z, Y, X) arrays of one shape, got "
                             f"{[image.shape for image in images]}.")
        if label_dtype not in LABEL_DTYPES:
            raise ValueError(f"label_dtype must be one of {LABEL_DTYPES}, got {label_dtype!r}.")
        for index, layer in enumerate(layers):
            if layer.array.ndim != 3 or layer.array.dtype.kind not in "iu":
                raise ValueError(f"{name}: label layer {index} must be a (Z, Y, X) integer array, got "
                                 f"{layer.array.dtype} {layer.array.shape}.")
        self.folder, self.name, self.stamp = Path(folder), name, stamp
        self.chunk_bytes = max(1, int(chunk_bytes))
        self.token = uuid.uuid4().hex[:12]
        image_files = [f"{self.token}_{channel:04d}.npy" for channel in range(len(images))]
        layer_files = [f"{self.token}_label_{index}.npy" for index in range(len(layers))]
        self._arrays = [(file, np.ascontiguousarray(array)) for file, array in
                        zip([*image_files, *layer_files], [*images, *(layer.array for layer in layers)])]
        self._record = {
            "format": FORMAT, "case": name, "stamp": stamp, "token": self.token,
            "geometry": {"spacing": list(geometry.spacing), "origin": list(geometry.origin),
                         "direction": list(geometry.direction)},
            "shape": list(shape),
            "images": [{"file": file} for file in image_files],
            "label": {"dtype": label_dtype,
                      "layers": [{"file": file, "offset": [int(o) for o in layer.offset]}
                                 for file, layer in zip(layer_files, layers)],
                      "values": [[int(layer), int(value), int(label)] for layer, value, label in values]},
            "labels": dict(labels),
        }
        self._index, self._offset, self._stream = 0, 0, None
        self.done = False

    @property
    def fraction(self) -> float:
        """Share of the array bytes written (0..1)."""
        total = sum(array.nbytes for _, array in self._arrays)
        written = sum(array.nbytes for _, array in self._arrays[:self._index]) + self._offset
        return 1.0 if self.done or not total else written / total

    def write_next(self) -> bool:
        """Write the next ``chunk_bytes`` (and, once all arrays are written, case.json); True while more remain."""
        if self.done:
            return False
        budget = self.chunk_bytes
        while budget > 0 and self._index < len(self._arrays):
            file, array = self._arrays[self._index]
            if self._stream is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._stream = open(self._partial(file), "wb")  # noqa: SIM115 - kept open across calls
                np.lib.format.write_array_header_1_0(self._stream, np.lib.format.header_data_from_array_1_0(array))
            data = memoryview(array.reshape(-1)).cast("B") if array.size else memoryview(b"")
            piece = data[self._offset:self._offset + budget]
            self._stream.write(piece)
            self._offset += len(piece)
            budget -= max(len(piece), 1)
            if self._offset >= len(data):
                self._stream.close()
                self._stream = None
                os.replace(self._partial(file), self.folder / file)
                self._index, self._offset = self._index + 1, 0
        if self._index < len(self._arrays):
            if self._stream is not None:
                self._stream.flush()  # this call's bytes leave the process now, not during the next call
            return True
        sizes = {file: (self.folder / file).stat().st_size for file, _ in self._arrays}
        for entry in [*self._record["images"], *self._record["label"]["layers"]]:
            entry["bytes"] = sizes[entry["file"]]
        write_json(self.folder / CASE_FILE, self._record)
        _remove_other_files(self.folder, keep={CASE_FILE, *sizes})
        self.done = True
        return False

    def abort(self) -> None:
        """Stop writing and delete what this writer wrote (an older staging of the case stays as it was)."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        for file, _ in self._arrays:
            for path in (self.folder / file, self._partial(file)):
                path.unlink(missing_ok=True)
        self.done = True

    def _partial(self, file: str) -> Path:
        return self.folder / f".{file}.partial"


def write_staged_case(folder: Path, name: str, stamp: str, images: Sequence[np.ndarray], geometry: Geometry,
                      layers: Sequence[LabelLayer], values: Sequence[tuple[int, int, int]], label_dtype: str,
                      labels: dict[str, int]) -> Path:
    """Stage one case in ``folder`` at once (see :class:`StagedCaseWriter`); returns its case.json."""
    writer = StagedCaseWriter(folder, name, stamp, images, geometry, layers, values, label_dtype, labels)
    while writer.write_next():
        pass
    return Path(folder) / CASE_FILE


def read_staged_case(folder: Path) -> StagedCase | None:
    """The staged case in ``folder``, or None when there is none or it is incomplete (the reason is logged)."""
    folder = Path(folder)
    problem, case = _parse_case(folder)
    if problem:
        log.debug("Ignoring staged case %s: %s", folder, problem)
    return case


def _parse_case(folder: Path) -> tuple[str | None, StagedCase | None]:
    path = folder / CASE_FILE
    if not path.is_file():
        return "no case.json (never staged, or the write was interrupted)", None
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            return f"format {data.get('format')!r} is not {FORMAT}", None
        label = data["label"]
        entries = [*data["images"], *label["layers"]]
        for entry in entries:
            file = folder / entry["file"]
            if not file.is_file():
                return f"{file.name} is missing", None
            if file.stat().st_size != int(entry["bytes"]):
                return f"{file.name} has {file.stat().st_size} bytes, not {entry['bytes']} (incomplete write)", None
        geometry = data["geometry"]
        case = StagedCase(
            folder=folder, name=str(data["case"]), stamp=str(data["stamp"]), token=str(data["token"]),
            geometry=Geometry(tuple(geometry["spacing"]), tuple(geometry["origin"]), tuple(geometry["direction"])),
            shape=tuple(int(s) for s in data["shape"]),
            image_files=[str(entry["file"]) for entry in data["images"]],
            layers=[dict(layer) for layer in label["layers"]],
            values=[(int(a), int(b), int(c)) for a, b, c in label["values"]],
            label_dtype=str(label["dtype"]), labels={str(k): int(v) for k, v in data["labels"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"case.json is unreadable ({type(exc).__name__}: {exc})", None
    if case.label_dtype not in LABEL_DTYPES or not case.image_files:
        return "case.json lists no image or an unknown label type", None
    return None, case


def remove_staged_case(case: StagedCase) -> None:
    """Delete the files of ``case`` (and its case.json when no newer staging replaced it meanwhile)."""
    for path in case.files:
        path.unlink(missing_ok=True)
    current = read_staged_case(case.folder)
    if current is None or current.token == case.token:
        (case.folder / CASE_FILE).unlink(missing_ok=True)
        _remove_other_files(case.folder, keep=set())
        with contextlib.suppress(OSError):
            case.folder.rmdir()


def _load(path: Path, shape: tuple[int, ...] | None = None) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise AutoSegNetError(f"Staged array {path} is unreadable ({exc}); export the training set again.") from None
    if shape is not None and array.shape != tuple(shape):
        raise AutoSegNetError(f"Staged array {path} has shape {array.shape}, expected {tuple(shape)}; export the "
                              "training set again.")
    return array


def _remove_other_files(folder: Path, keep: set[str]) -> None:
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.name not in keep and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()


# ----- the export as a whole --------------------------------------------------------------------------------
@dataclass
class ExportManifest:
    """``export.json``: what the raw dataset must hold after the import (written when staging is complete)."""

    dataset: str  # the raw dataset folder name, DatasetXXX_Name
    dataset_name: str
    channel_names: list[str]
    file_ending: str
    labels: dict[str, int]  # name -> value 1..N, in value order
    cases: dict[str, str]  # case name -> stamp, in case order
    warnings: list[str] = field(default_factory=list)

    def save(self, staging: Path) -> Path:
        path = Path(staging) / EXPORT_FILE
        write_json(path, {"format": FORMAT, "dataset": self.dataset, "dataset_name": self.dataset_name,
                          "channel_names": list(self.channel_names), "file_ending": self.file_ending,
                          "labels": dict(self.labels), "cases": dict(self.cases), "warnings": list(self.warnings)})
        return path

    @classmethod
    def load(cls, staging: Path) -> ExportManifest:
        path = Path(staging) / EXPORT_FILE
        if not path.is_file():
            raise AutoSegNetError(f"{staging} holds no complete export ({EXPORT_FILE} is missing): staging was not "
                                  "finished. Export the training set again.")
        data = read_json(path)
        try:
            if data.get("format") != FORMAT:
                raise DatasetFormatError(f"{path}: field 'format' must be {FORMAT}, got {data.get('format')!r}.")
            return cls(str(data["dataset"]), str(data["dataset_name"]), [str(c) for c in data["channel_names"]],
                       str(data["file_ending"]), {str(k): int(v) for k, v in data["labels"].items()},
                       {str(k): str(v) for k, v in data["cases"].items()}, [str(w) for w in data.get("warnings", [])])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DatasetFormatError(f"{path}: missing or wrong field ({type(exc).__name__}: {exc}).") from None


def discard_manifest(staging: Path) -> None:
    """Remove ``export.json`` (a new staging starts: an incomplete one must never be imported)."""
    (Path(staging) / EXPORT_FILE).unlink(missing_ok=True)


def read_imported(staging: Path) -> dict[str, str]:
    """``{case: stamp}`` the raw dataset held after the last import ({} when unknown)."""
    try:
        data = json.loads((Path(staging) / IMPORTED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_imported(staging: Path, stamps: dict[str, str]) -> None:
    write_json(Path(staging) / IMPORTED_FILE, dict(stamps))


def case_folder(staging: Path, case: str) -> Path:
    """Where case ``case`` is staged."""
    return Path(staging) / CASES_FOLDER / case


def remove_stale_staging(staging: Path, keep: set[str]) -> list[str]:
    """Delete staged case folders whose case is not in ``keep`` (cases that left the training set)."""
    root = Path(staging) / CASES_FOLDER
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else ():
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
