"""``plans.json``: the planner's decisions, typed and versioned.

Axis order: every per-axis list in a configuration (``spacing``, ``patch_size``, ``median_image_size``,
the network's kernels and strides) is in the **transposed** array order, i.e. after applying
``transpose_forward`` to the ``(Z, Y, X)`` axes of the raw arrays, so the out-of-plane axis comes first.
2D configurations list only the two in-plane axes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from AutoSegNetLib.errors import DatasetFormatError, did_you_mean
from AutoSegNetLib.layout import PLANS_FILE
from AutoSegNetLib.utils.atomic import read_json, write_json

PLANS_FORMAT = "autosegnet-plans"
PLANS_VERSION = 1


@dataclass
class ResamplingSettings:
    """How preprocessing and prediction resample: spline orders and the anisotropy rule."""

    order_data: int = 3
    order_seg: int = 1
    order_probabilities: int = 1
    order_z_anisotropic: int = 0
    anisotropy_threshold: float = 3.0


@dataclass
class ConfigurationPlan:
    """One configuration (``2d``, ``3d_fullres``, ``3d_lowres``, ``3d_cascade_fullres``)."""

    name: str
    data_identifier: str
    spacing: list[float]
    patch_size: list[int]
    batch_size: int
    median_image_size: list[float]
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    batch_dice: bool
    network: dict[str, Any]
    resampling: ResamplingSettings = field(default_factory=ResamplingSettings)
    previous_stage: str | None = None
    next_stage: str | None = None

    @property
    def ndim(self) -> int:
        return len(self.patch_size)


@dataclass
class Plans:
    """Everything later stages need to know about how a dataset is processed."""

    dataset_name: str
    plans_name: str
    planner: str
    transpose_forward: list[int]
    transpose_backward: list[int]
    original_median_spacing: list[float]
    original_median_shape: list[float]
    image_reader_writer: str
    foreground_intensity_properties: dict[str, dict[str, float]]
    configurations: dict[str, ConfigurationPlan]
    gpu_memory_target_gb: float = 8.0
    format: str = PLANS_FORMAT
    version: int = PLANS_VERSION

    def configuration(self, name: str) -> ConfigurationPlan:
        """The configuration called ``name``, or an error listing the planned ones."""
        if name not in self.configurations:
            known = list(self.configurations)
            raise DatasetFormatError(
                f"Configuration {name!r} is not in the plans of {self.dataset_name}.{did_you_mean(name, known)} "
                f"Planned: {', '.join(known)}."
            )
        return self.configurations[name]

    # ----- (de)serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data = {"format": data.pop("format"), "version": data.pop("version"), **data}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = PLANS_FILE) -> Plans:
        data = dict(data)
        if data.get("format") != PLANS_FORMAT:
            raise DatasetFormatError(
                f"{source}: field 'format' must be {PLANS_FORMAT!r}, got {data.get('format')!r}. nnU-Net plans "
                "files are read by `autosegnet import-nnunet`."
            )
        if data.get("version") != PLANS_VERSION:
            raise DatasetFormatError(
                f"{source}: plans version {data.get('version')!r} is not supported (this engine reads version "
                f"{PLANS_VERSION}); re-run `autosegnet plan`."
            )
        _check_keys(data, cls, source)
        configurations = {}
        for name, conf in _typed(data["configurations"], dict, "configurations", source).items():
            where = f"configurations.{name}"
            conf = dict(_typed(conf, dict, where, source))
            _check_keys(conf, ConfigurationPlan, source, prefix=f"{where}.")
            resampling = _typed(conf.pop("resampling", {}), dict, f"{where}.resampling", source)
            _check_keys(resampling, ResamplingSettings, source, prefix=f"{where}.resampling.", required=False)
            configurations[name] = ConfigurationPlan(**conf, resampling=ResamplingSettings(**resampling))
            _check_types(configurations[name], source, where)
        data["configurations"] = configurations
        plans = cls(**data)
        _check_types(plans, source, "")
        return plans

    @classmethod
    def load(cls, path: str | Path) -> Plans:
        return cls.from_dict(read_json(path), source=str(path))

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


def _check_keys(data: dict, cls: type, source: str, prefix: str = "", required: bool = True) -> None:
    names = {f.name for f in fields(cls)}
    for key in data:
        if key not in names:
            raise DatasetFormatError(f"{source}: unknown field '{prefix}{key}'.{did_you_mean(key, names)}")
    if required:
        for f in fields(cls):
            if f.name not in data and not _has_default(f):
                raise DatasetFormatError(f"{source}: required field '{prefix}{f.name}' is missing.")


def _has_default(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is not MISSING or f.default_factory is not MISSING


_EXPECTED_TYPES = {
    "list[float]": list, "list[int]": list, "list[str]": list, "list[bool]": list,
    "list[int] | None": (list, type(None)),
    "int": int, "float": (int, float), "str": str, "bool": bool, "str | None": (str, type(None)),
    "dict[str, Any]": dict, "dict[str, dict[str, float]]": dict,
}


def _check_types(obj: Any, source: str, where: str) -> None:
    for f in fields(obj):
        expected = _EXPECTED_TYPES.get(str(f.type))
        value = getattr(obj, f.name)
        if expected is not None and not isinstance(value, expected):
            name = f"{where}.{f.name}" if where else f.name
            raise DatasetFormatError(
                f"{source}: field {name!r} should be {f.type}, got {type(value).__name__} {value!r}."
            )


def _typed(value: Any, kind: type, where: str, source: str) -> Any:
    if not isinstance(value, kind):
        raise DatasetFormatError(f"{source}: field {where!r} should be a {kind.__name__}, got {type(value).__name__}.")
    return value
