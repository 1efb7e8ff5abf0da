"""nnU-Net v2 ``dataset.json`` as a typed, validated object.

Errors name the file and the field and say how to fix it. Unknown keys are rejected, except the
descriptive metadata keys that MSD and nnU-Net datasets commonly carry (``name``, ``description``, ...),
which are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import DatasetFormatError, did_you_mean
from AutoSegNetLib.utils.atomic import read_json, write_json

IGNORE_LABEL_NAME = "ignore"
REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
OPTIONAL_KEYS = ("overwrite_image_reader_writer", "regions_class_order", "dataset")
METADATA_KEYS = (
    "name", "description", "reference", "licence", "license", "release", "tensorImageSize", "converted_by",
    "author", "autosegnet",
)


@dataclass
class CaseFiles:
    """Explicit files of one case as listed in dataset.json's ``dataset`` entry (paths as written)."""

    images: list[str]
    label: str | None = None


@dataclass
class DatasetJson:
    """The contents of a raw dataset's ``dataset.json``.

    ``labels`` maps a name to an integer value, or to a list of values for a region (then
    ``regions_class_order`` gives the value written for each region, in order). Background is 0 and
    integer labels are consecutive; a label named ``ignore`` (highest value) is excluded from the loss.
    """

    channel_names: dict[str, str]
    labels: dict[str, int | list[int]]
    num_training: int
    file_ending: str
    overwrite_image_reader_writer: str | None = None
    regions_class_order: list[int] | None = None
    dataset: dict[str, CaseFiles] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = "dataset.json"

    def __post_init__(self) -> None:
        self.validate()

    # ----- derived facts ---------------------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def has_regions(self) -> bool:
        return any(isinstance(v, list) for k, v in self.labels.items() if k != IGNORE_LABEL_NAME)

    @property
    def ignore_label(self) -> int | None:
        value = self.labels.get(IGNORE_LABEL_NAME)
        return int(value) if value is not None else None

    @property
    def label_values(self) -> list[int]:
        """All integer values that may appear in label files (including ignore), sorted."""
        values: set[int] = set()
        for value in self.labels.values():
            values.update(value if isinstance(value, list) else [value])
        return sorted(values)

    @property
    def foreground_labels(self) -> dict[str, int | list[int]]:
        """Labels the network predicts, without background and ignore."""
        return {k: v for k, v in self.labels.items() if k != IGNORE_LABEL_NAME and v not in (0, [0])}

    @property
    def num_segmentation_heads(self) -> int:
        """Network output channels: classes incl. background (softmax) or one per region (sigmoid)."""
        if self.has_regions:
            return len(self.foreground_labels)
        return len(self.foreground_labels) + 1

    def label_name(self, value: int) -> str:
        for name, v in self.labels.items():
            if v == value:
                return name
        raise KeyError(value)

    # ----- validation ------------------------------------------------------------------------------
    def _err(self, fieldname: str, message: str) -> DatasetFormatError:
        return DatasetFormatError(f"{self.source}: field {fieldname!r}: {message}")

    def validate(self) -> None:
        self._validate_channels()
        self._validate_labels()
        if not isinstance(self.num_training, int) or isinstance(self.num_training, bool) or self.num_training < 0:
            raise self._err("numTraining", f"must be a non-negative integer, got {self.num_training!r}.")
        if not isinstance(self.file_ending, str) or not self.file_ending.startswith("."):
            raise self._err("file_ending", f"must be a string starting with '.', like '.nii.gz', got {self.file_ending!r}.")

    def _validate_channels(self) -> None:
        if not isinstance(self.channel_names, dict) or not self.channel_names:
            raise self._err("channel_names", 'must be a non-empty object like {"0": "CT"}.')
        expected = [str(i) for i in range(len(self.channel_names))]
        if sorted(self.channel_names, key=_int_or_inf) != expected:
            raise self._err("channel_names", f"keys must be the channel indices {expected}, got {list(self.channel_names)}.")
        for key, value in self.channel_names.items():
            if not isinstance(value, str) or not value:
                raise self._err("channel_names", f"channel {key} must have a non-empty name, got {value!r}.")
        self.channel_names = {k: self.channel_names[k] for k in expected}

    def _validate_labels(self) -> None:
        labels = self.labels
        if not isinstance(labels, dict) or not labels:
            raise self._err("labels", 'must be a non-empty object like {"background": 0, "tumour": 1}.')
        for name, value in labels.items():
            ok_int = isinstance(value, int) and not isinstance(value, bool) and value >= 0
            ok_list = isinstance(value, list) and value and all(isinstance(v, int) and v >= 0 for v in value)
            if not (ok_int or ok_list):
                raise self._err("labels", f"label {name!r} must be a non-negative integer or a list of them, got {value!r}.")
        if 0 not in labels.values() and [0] not in labels.values():
            raise self._err("labels", "the background label (value 0) is missing; add \"background\": 0.")
        ignore = labels.get(IGNORE_LABEL_NAME)
        if ignore is not None and (not isinstance(ignore, int) or ignore != max(self.label_values)):
            raise self._err("labels", f"the 'ignore' label must be one integer, the highest value; got {ignore!r}.")
        if self.has_regions:
            n_regions = len(self.foreground_labels)
            if not self.regions_class_order or len(self.regions_class_order) != n_regions:
                raise self._err(
                    "regions_class_order",
                    f"labels use regions (lists of values), so give one output value per region ({n_regions} "
                    f"values, in the order of the labels), got {self.regions_class_order!r}.",
                )
        else:
            values = sorted(v for k, v in labels.items() if k != IGNORE_LABEL_NAME)
            if len(set(values)) != len(values):
                raise self._err("labels", f"two labels share a value: {labels}.")
            if values != list(range(len(values))):
                raise self._err(
                    "labels",
                    f"integer label values must be consecutive from 0, got {values}; renumber them "
                    f"(e.g. with `autosegnet convert folders --map-labels`).",
                )

    # ----- (de)serialisation -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "dataset.json") -> DatasetJson:
        if not isinstance(data, dict):
            raise DatasetFormatError(f"{source}: expected a JSON object at the top level.")
        known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS) | set(METADATA_KEYS)
        for key in data:
            if key not in known:
                hint = did_you_mean(key, known)
                raise DatasetFormatError(f"{source}: unknown field {key!r}.{hint} Known fields: {', '.join(sorted(known))}.")
        for key in REQUIRED_KEYS:
            if key not in data:
                extra = " (MSD datasets use 'modality'; convert them with `autosegnet convert msd`)" if key == "channel_names" else ""
                raise DatasetFormatError(f"{source}: required field {key!r} is missing{extra}.")
        return cls(
            channel_names={str(k): v for k, v in data["channel_names"].items()} if isinstance(data["channel_names"], dict) else data["channel_names"],
            labels=data["labels"],
            num_training=data["numTraining"],
            file_ending=data["file_ending"],
            overwrite_image_reader_writer=data.get("overwrite_image_reader_writer"),
            regions_class_order=data.get("regions_class_order"),
            dataset=_parse_case_files(data.get("dataset"), source),
            metadata={k: data[k] for k in METADATA_KEYS if k in data},
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.metadata)
        out.update(channel_names=self.channel_names, labels=self.labels, numTraining=self.num_training,
                   file_ending=self.file_ending)
        if self.overwrite_image_reader_writer:
            out["overwrite_image_reader_writer"] = self.overwrite_image_reader_writer
        if self.regions_class_order is not None:
            out["regions_class_order"] = self.regions_class_order
        if self.dataset is not None:
            out["dataset"] = {k: {"images": v.images, **({"label": v.label} if v.label else {})}
                              for k, v in self.dataset.items()}
        return out

    @classmethod
    def load(cls, path: str | Path) -> DatasetJson:
        path = Path(path)
        if path.is_dir():
            path = path / "dataset.json"
        return cls.from_dict(read_json(path), source=str(path))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "dataset.json"
        write_json(path, self.to_dict())


def _int_or_inf(key: str) -> float:
    return int(key) if key.isdigit() else float("inf")


def _parse_case_files(data: Any, source: str) -> dict[str, CaseFiles] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{source}: field 'dataset' must map case names to {{'images': [...], 'label': ...}}.")
    cases = {}
    for case, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), list):
            raise DatasetFormatError(f"{source}: field 'dataset', case {case!r}: needs an 'images' list (and a 'label').")
        unknown = set(entry) - {"images", "label"}
        if unknown:
            raise DatasetFormatError(f"{source}: field 'dataset', case {case!r}: unknown keys {sorted(unknown)}.")
        cases[case] = CaseFiles(images=list(entry["images"]), label=entry.get("label"))
    return cases
