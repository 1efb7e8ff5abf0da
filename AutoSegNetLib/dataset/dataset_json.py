"""nnU-Net v2 ``dataset.json`` as a typed, validated object.

Errors name the file and the field and say how to fix it. Unknown keys are rejected, except the
descriptive metadata keys that MSD and nnU-Net datasets commonly carry (``name``, ``description``, ...),
which are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import AutoSegNetError, DatasetFormatError, did_you_mean
from AutoSegNetLib.layout import DATASET_JSON_FILE
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
    source: str = DATASET_JSON_FILE

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
        """Check every field; raises :class:`DatasetFormatError` naming the file and the field."""
        self._validate_channels()
        self._validate_labels()
        if not isinstance(self.num_training, int) or isinstance(self.num_training, bool) or self.num_training < 0:
            raise self._err("numTraining", f"must be a non-negative integer, got {self.num_training!r}.")
        if not isinstance(self.file_ending, str) or not self.file_ending.startswith(".") or len(self.file_ending) < 2:
            raise self._err(
                "file_ending", f"must be a string starting with '.', like '.nii.gz', got {self.file_ending!r}."
            )
        self._validate_reader()

    def _validate_reader(self) -> None:
        from AutoSegNetLib.imageio import io_for, registered_ios

        name = self.overwrite_image_reader_writer
        if name is not None and (not isinstance(name, str) or name not in registered_ios()):
            raise self._err(
                "overwrite_image_reader_writer",
                f"unknown reader/writer {name!r}.{did_you_mean(str(name), registered_ios())} "
                f"Known: {', '.join(sorted(registered_ios()))}.",
            )
        if name is None:
            try:
                io_for(self.file_ending)
            except AutoSegNetError as exc:
                raise self._err("file_ending", str(exc)) from None

    def _validate_channels(self) -> None:
        if not isinstance(self.channel_names, dict) or not self.channel_names:
            raise self._err("channel_names", 'must be a non-empty object like {"0": "CT"}.')
        expected = [str(i) for i in range(len(self.channel_names))]
        if sorted(self.channel_names, key=_int_or_inf) != expected:
            raise self._err(
                "channel_names", f"keys must be the channel indices {expected}, got {list(self.channel_names)}."
            )
        for key, value in self.channel_names.items():
            if not isinstance(value, str) or not value:
                raise self._err("channel_names", f"channel {key} must have a non-empty name, got {value!r}.")
        self.channel_names = {k: self.channel_names[k] for k in expected}

    def _validate_labels(self) -> None:
        labels = self.labels
        if not isinstance(labels, dict) or not labels:
            raise self._err("labels", 'must be a non-empty object like {"background": 0, "tumour": 1}.')
        for name, value in labels.items():
            ok_list = isinstance(value, list) and len(value) > 0 and all(_is_label_int(v) for v in value)
            if not (_is_label_int(value) or ok_list):
                raise self._err(
                    "labels", f"label {name!r} must be a non-negative integer or a list of them, got {value!r}."
                )
        named = [v for k, v in labels.items() if k != IGNORE_LABEL_NAME]
        if 0 not in named and [0] not in named:
            raise self._err("labels", "the background label (value 0) is missing; add \"background\": 0.")
        ignore = labels.get(IGNORE_LABEL_NAME)
        if ignore is not None:
            others = [v for k, v in labels.items() if k != IGNORE_LABEL_NAME]
            highest = max((x for v in others for x in (v if isinstance(v, list) else [v])), default=-1)
            if not _is_label_int(ignore) or ignore != highest + 1:
                raise self._err(
                    "labels",
                    f"the 'ignore' label must be one integer right after the highest label ({highest + 1}); "
                    f"got {ignore!r}.",
                )
        if self.has_regions:
            self._validate_regions()
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

    def _validate_regions(self) -> None:
        values = sorted({x for k, v in self.labels.items() if k != IGNORE_LABEL_NAME
                         for x in (v if isinstance(v, list) else [v])})
        if values != list(range(len(values))):
            raise self._err("labels", f"values used by labels and regions must be consecutive from 0, got {values}.")
        n_regions = len(self.foreground_labels)
        order = self.regions_class_order
        if not isinstance(order, list) or len(order) != n_regions or not all(_is_label_int(v) for v in order):
            raise self._err(
                "regions_class_order",
                f"labels use regions (lists of values), so give one output value per region ({n_regions} "
                f"integers, in the order of the labels), got {order!r}.",
            )

    # ----- (de)serialisation -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = DATASET_JSON_FILE) -> DatasetJson:
        """Parse and validate; ``source`` (the file path) prefixes every error message."""
        if not isinstance(data, dict):
            raise DatasetFormatError(f"{source}: expected a JSON object at the top level.")
        if "channel_names" not in data and ("modality" in data or "training" in data):
            raise DatasetFormatError(
                f"{source}: field 'modality'/'training': this is a Medical Segmentation Decathlon or nnU-Net v1 "
                "dataset.json, not nnU-Net v2; convert the dataset with `autosegnet convert msd SRC` or "
                "`autosegnet convert nnunet-v1 SRC`."
            )
        known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS) | set(METADATA_KEYS)
        for key in data:
            if key not in known:
                raise DatasetFormatError(
                    f"{source}: unknown field {key!r}.{did_you_mean(key, known)} "
                    f"Known fields: {', '.join(sorted(known))}."
                )
        for key in REQUIRED_KEYS:
            if key not in data:
                raise DatasetFormatError(f"{source}: required field {key!r} is missing.")
        channels = data["channel_names"]
        return cls(
            channel_names={str(k): v for k, v in channels.items()} if isinstance(channels, dict) else channels,
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
            path = path / DATASET_JSON_FILE
        return cls.from_dict(read_json(path), source=str(path))

    def save(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / DATASET_JSON_FILE
        write_json(path, self.to_dict())


def _is_label_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _int_or_inf(key: str) -> float:
    return int(key) if key.isdigit() else float("inf")


def _parse_case_files(data: Any, source: str) -> dict[str, CaseFiles] | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{source}: field 'dataset' must map case names to {{'images': [...], 'label': ...}}.")
    cases = {}
    for case, entry in data.items():
        where = f"{source}: field 'dataset', case {case!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("images"), list) or not entry["images"]:
            raise DatasetFormatError(f"{where}: needs a non-empty 'images' list (and a 'label').")
        unknown = set(entry) - {"images", "label"}
        if unknown:
            raise DatasetFormatError(f"{where}: unknown keys {sorted(unknown)}; allowed are 'images' and 'label'.")
        if not all(isinstance(p, str) and p for p in entry["images"]):
            raise DatasetFormatError(f"{where}: 'images' must list file paths (strings), got {entry['images']!r}.")
        if entry.get("label") is not None and not isinstance(entry["label"], str):
            raise DatasetFormatError(f"{where}: 'label' must be a file path (string), got {entry['label']!r}.")
        cases[case] = CaseFiles(images=list(entry["images"]), label=entry.get("label"))
    return cases
