"""``fingerprint.json``: what the planner knows about a dataset, typed and versioned.

Axis order: ``spacing`` and the shapes of every case are in the raw **array** order ``(z, y, x)`` (spacing in
mm), before any transpose; 2D images have ``spacing[0] == 999`` and ``shape[0] == 1``.

Intensity statistics are keyed by the channel index as a string (``"0"``) and use nnU-Net's names
(``mean``, ``median``, ``std``, ``min``, ``max``, ``percentile_00_5``, ``percentile_99_5``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from AutoSegNetLib.errors import DatasetFormatError, did_you_mean
from AutoSegNetLib.layout import FINGERPRINT_FILE
from AutoSegNetLib.utils.atomic import read_json, write_json

FINGERPRINT_FORMAT = "autosegnet-fingerprint"
FINGERPRINT_VERSION = 1


@dataclass
class CaseFingerprint:
    """One training case: spacing ``(z, y, x)`` mm, shapes ``(Z, Y, X)`` before/after the non-zero crop."""

    name: str
    spacing: list[float]
    shape_before_crop: list[int]
    shape_after_crop: list[int]
    relative_size_after_crop: float
    foreground_voxels: int
    orientation: str | None = None  # ITK axes' anatomical code (``"LPS"``); None for 2D and older fingerprints


@dataclass
class IntensityStatistics:
    """Foreground intensity statistics of one channel (over the sampled foreground voxels of all cases)."""

    mean: float
    median: float
    std: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass
class Fingerprint:
    """Per-case geometry and per-channel foreground intensities of a dataset's training cases."""

    dataset_name: str
    num_channels: int
    cases: list[CaseFingerprint]
    foreground_intensity_properties: dict[str, IntensityStatistics]
    median_relative_size_after_crop: float
    foreground_samples_per_case: int
    seed: int
    format: str = FINGERPRINT_FORMAT
    version: int = FINGERPRINT_VERSION

    # ----- derived arrays (what the planner works with) -----------------------------------------------
    @property
    def spacings(self) -> np.ndarray:
        """``(N, 3)`` spacings ``(z, y, x)`` in mm, one row per case."""
        return np.array([c.spacing for c in self.cases], dtype=np.float64).reshape(-1, 3)

    @property
    def shapes_after_crop(self) -> np.ndarray:
        """``(N, 3)`` shapes ``(Z, Y, X)`` after cropping to the non-zero region."""
        return np.array([c.shape_after_crop for c in self.cases], dtype=np.int64).reshape(-1, 3)

    @property
    def num_cases(self) -> int:
        return len(self.cases)

    def training_orientation(self, min_share: float = 0.8) -> str | None:
        """The orientation code most training cases share, if at least ``min_share`` of them do; else None.

        None also when no case records one (2D data, fingerprints written before orientations were recorded).
        """
        codes = Counter(c.orientation for c in self.cases if c.orientation is not None)
        if not codes:
            return None
        code, count = codes.most_common(1)[0]
        return code if count >= min_share * self.num_cases else None

    def intensity_properties_dict(self) -> dict[str, dict[str, float]]:
        """The per-channel statistics as plain dicts (the form ``plans.json`` stores)."""
        return {k: asdict(v) for k, v in self.foreground_intensity_properties.items()}

    # ----- (de)serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"format": data.pop("format"), "version": data.pop("version"), **data}

    @classmethod
    def from_dict(cls, data: Any, source: str = FINGERPRINT_FILE) -> Fingerprint:
        """Parse and check a fingerprint; unknown, missing or mistyped fields raise :class:`DatasetFormatError`."""
        data = dict(_typed(data, dict, "(top level)", source))
        if data.get("format") != FINGERPRINT_FORMAT:
            raise DatasetFormatError(
                f"{source}: field 'format' must be {FINGERPRINT_FORMAT!r}, got {data.get('format')!r}. "
                "Re-create it with `autosegnet fingerprint DATASET`."
            )
        if data.get("version") != FINGERPRINT_VERSION:
            raise DatasetFormatError(
                f"{source}: fingerprint version {data.get('version')!r} is not supported (this engine reads version "
                f"{FINGERPRINT_VERSION}); re-run `autosegnet fingerprint DATASET`."
            )
        _check_fields(data, cls, source, "")
        cases = []
        for i, case in enumerate(_typed(data["cases"], list, "cases", source)):
            case = _typed(case, dict, f"cases[{i}]", source)
            _check_fields(case, CaseFingerprint, source, f"cases[{i}].")
            cases.append(CaseFingerprint(**case))
        stats = {}
        for channel, values in _typed(data["foreground_intensity_properties"], dict,
                                      "foreground_intensity_properties", source).items():
            where = f"foreground_intensity_properties.{channel}."
            values = _typed(values, dict, where[:-1], source)
            _check_fields(values, IntensityStatistics, source, where)
            stats[str(channel)] = IntensityStatistics(**{k: float(v) for k, v in values.items()})
        data.update(cases=cases, foreground_intensity_properties=stats)
        fingerprint = cls(**data)
        if len(stats) != fingerprint.num_channels:
            raise DatasetFormatError(
                f"{source}: 'foreground_intensity_properties' has {len(stats)} channels but 'num_channels' is "
                f"{fingerprint.num_channels}; re-run `autosegnet fingerprint DATASET`."
            )
        return fingerprint

    @classmethod
    def load(cls, path: str | Path) -> Fingerprint:
        return cls.from_dict(read_json(path), source=str(path))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


# ----- checks -----------------------------------------------------------------------------------------
_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "str | None": (str, type(None)), "int": (int,), "float": (int, float), "list[float]": (list,),
    "list[int]": (list,),
    "list[CaseFingerprint]": (list,), "dict[str, IntensityStatistics]": (dict,),
}


def _check_fields(data: dict, cls: type, source: str, prefix: str) -> None:
    """Reject unknown keys, missing required keys and values of the wrong JSON type."""
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            raise DatasetFormatError(f"{source}: unknown field '{prefix}{key}'.{did_you_mean(key, names)}")
    for f in fields(cls):
        if f.name not in data:
            if f.name in ("format", "version") or f.default is not MISSING:
                continue
            raise DatasetFormatError(f"{source}: required field '{prefix}{f.name}' is missing.")
        expected = _TYPES.get(str(f.type))
        value = data[f.name]
        if expected and (not isinstance(value, expected) or isinstance(value, bool)):
            raise DatasetFormatError(
                f"{source}: field '{prefix}{f.name}' should be {f.type}, got {type(value).__name__} {value!r}."
            )
        if str(f.type).startswith("list[") and str(f.type) != "list[CaseFingerprint]":
            _check_numbers(value, f"{prefix}{f.name}", source)


def _check_numbers(values: list, where: str, source: str) -> None:
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise DatasetFormatError(f"{source}: field '{where}' must be a list of numbers, got {values!r}.")


def _typed(value: Any, kind: type, where: str, source: str) -> Any:
    if not isinstance(value, kind):
        raise DatasetFormatError(f"{source}: field {where!r} should be a {kind.__name__}, got {type(value).__name__}.")
    return value
