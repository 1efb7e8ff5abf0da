"""``import-nnunet``: turn an nnU-Net v2 model folder into an AutoSegNet model folder that predicts the same.

Reads ``plans.json`` (``configurations.<c>.architecture.network_class_name`` + ``arch_kwargs``, or the older
``UNet_class_name`` keys), ``dataset.json`` and ``fold_<k>/checkpoint_<name>.pth`` (``network_weights``) and
writes ``AutoSegNet__<plans>__<configuration>/`` with our ``plans.json``, ``dataset.json`` and checkpoints.
Supported and refused features are listed in ``docs/nnunet_import.md``; anything that would silently change
the predictions is refused with an error naming the setting.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from AutoSegNetLib.dataset.dataset_json import METADATA_KEYS, OPTIONAL_KEYS, REQUIRED_KEYS, DatasetJson
from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.layout import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    DATASET_JSON_FILE,
    PLANS_FILE,
    REQUIRED_MODEL_FILES,
    checkpoint_file_name,
    checkpoint_path,
    folds_with_checkpoint,
    model_folder_name,
    parse_folds,
    split_model_folder_name,
)
from AutoSegNetLib.network import NetworkSpec, build_network
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans, ResamplingSettings
from AutoSegNetLib.utils.atomic import atomic_folder, read_json
from AutoSegNetLib.utils.checkpoint_io import UnsafeCheckpointError, load_plain, write_checkpoint

log = logging.getLogger(__name__)

SUPPORTED_NETWORKS = ("PlainConvUNet", "ResidualEncoderUNet")
SUPPORTED_READERS = ("SimpleITKIO", "NaturalImage2DIO")
SUPPORTED_RESAMPLING = ("resample_data_or_seg_to_shape",)


def import_nnunet_model(
    source: str | Path,
    results_dataset: Path | None = None,
    configuration: str | None = None,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = "final",
    trust_checkpoints: bool = False,
    force: bool = False,
) -> Path:
    """Convert the nnU-Net v2 model folder ``source``; returns the new model folder.

    It is written to ``results_dataset/AutoSegNet__<plans>__<configuration>`` (default: beside ``source``),
    through a hidden folder beside it that is renamed at the end: a refused import leaves nothing, a refused
    ``force`` import leaves the earlier one. ``trust_checkpoints`` allows checkpoints that hold arbitrary Python
    objects (loading them runs code from the file); by default only tensors, plain data and NumPy numbers are
    accepted.
    """
    source = Path(source)
    for required in REQUIRED_MODEL_FILES:
        if not (source / required).is_file():
            raise AutoSegNetError(f"{source} is not an nnU-Net v2 model folder: {required} is missing.")
    raw_plans = read_json(source / PLANS_FILE)
    configuration = configuration or _configuration_from_name(source, raw_plans)
    plans = plans_from_nnunet(raw_plans, configuration, str(source / PLANS_FILE))
    dataset_json = dataset_json_from_nnunet(read_json(source / DATASET_JSON_FILE), str(source / DATASET_JSON_FILE))
    _check_reader(plans.image_reader_writer, dataset_json)
    conf = plans.configuration(configuration)
    chosen = parse_folds(folds) or folds_with_checkpoint(source, checkpoint)
    if not chosen:
        raise AutoSegNetError(f"{source} has no fold_<k>/{checkpoint_file_name(checkpoint)}.")
    target = Path(results_dataset or source.parent) / model_folder_name(plans.plans_name, configuration)
    if target.exists() and not force:
        raise AutoSegNetError(f"{target} exists already; pass --force to replace it.")
    with atomic_folder(target, replace=force) as staging:
        plans.save(staging / PLANS_FILE)
        dataset_json.save(staging / DATASET_JSON_FILE)
        extra_inputs = _cascade_inputs(conf, dataset_json)
        for fold in chosen:
            path = checkpoint_path(source, fold, checkpoint)
            converted = convert_checkpoint(load_nnunet_checkpoint(path, trust_checkpoints), conf, dataset_json,
                                           extra_inputs, str(path))
            write_checkpoint(checkpoint_path(staging, fold, "final"), converted)
    log.info("Imported %s (%s, folds %s) to %s", source.name, configuration, ", ".join(chosen), target)
    return target


# ----- plans ----------------------------------------------------------------------------------------
def plans_from_nnunet(raw: dict[str, Any], configuration: str, source: str = "plans.json") -> Plans:
    """Our :class:`Plans` holding the one ``configuration`` of an nnU-Net v2 plans dict."""
    configurations = raw.get("configurations")
    if not isinstance(configurations, dict) or configuration not in configurations:
        known = ", ".join(configurations) if isinstance(configurations, dict) else "none"
        raise AutoSegNetError(f"{source}: configuration {configuration!r} is not planned (planned: {known}).")
    conf = resolve_inheritance(configurations, configuration, source)
    try:
        plan = Plans(
            dataset_name=raw["dataset_name"],
            plans_name=raw["plans_name"],
            planner=str(raw.get("experiment_planner_used", "nnU-Net")),
            transpose_forward=list(raw["transpose_forward"]),
            transpose_backward=list(raw["transpose_backward"]),
            original_median_spacing=[float(v) for v in raw["original_median_spacing_after_transp"]],
            original_median_shape=[float(v) for v in raw["original_median_shape_after_transp"]],
            image_reader_writer=str(raw.get("image_reader_writer", "SimpleITKIO")),
            foreground_intensity_properties={
                str(k): {name: float(v) for name, v in props.items()}
                for k, props in raw.get("foreground_intensity_properties_per_channel", {}).items()
            },
            configurations={configuration: configuration_from_nnunet(conf, configuration, source)},
        )
    except KeyError as error:
        raise AutoSegNetError(
            f"{source}: field {error.args[0]!r} is missing; is this an nnU-Net v2 plans file?"
        ) from None
    return Plans.from_dict(plan.to_dict(), source)


def resolve_inheritance(configurations: dict[str, Any], name: str, source: str, seen: tuple[str, ...] = ()) -> dict:
    """A configuration with ``inherits_from`` merged in (the child's keys win), as nnU-Net resolves it."""
    if name in seen:
        raise AutoSegNetError(f"{source}: configurations inherit from each other in a loop: {' -> '.join(seen)}.")
    conf = copy.deepcopy(configurations[name])
    parent = conf.pop("inherits_from", None)
    if parent is None:
        return conf
    if parent not in configurations:
        raise AutoSegNetError(f"{source}: {name} inherits from {parent!r}, which is not in the plans.")
    merged = resolve_inheritance(configurations, parent, source, (*seen, name))
    merged.update(conf)
    return merged


def configuration_from_nnunet(conf: dict[str, Any], name: str, source: str) -> ConfigurationPlan:
    where = f"{source}: configurations.{name}"
    ndim = len(conf["patch_size"])
    next_stage = conf.get("next_stage")
    if isinstance(next_stage, list):
        next_stage = next_stage[0] if next_stage else None
    return ConfigurationPlan(
        name=name,
        data_identifier=str(conf.get("data_identifier", f"nnUNet_{name}")),
        spacing=[float(s) for s in conf["spacing"]],
        patch_size=[int(p) for p in conf["patch_size"]],
        batch_size=int(conf.get("batch_size", 2)),
        median_image_size=[float(v) for v in conf.get("median_image_size_in_voxels", conf["patch_size"])],
        normalization_schemes=list(conf["normalization_schemes"]),
        use_mask_for_norm=[bool(v) for v in conf["use_mask_for_norm"]],
        batch_dice=bool(conf.get("batch_dice", False)),
        network=network_spec_from_nnunet(conf, ndim, where).to_dict(),
        resampling=resampling_from_nnunet(conf, where),
        previous_stage=conf.get("previous_stage"),
        next_stage=next_stage,
    )


def network_spec_from_nnunet(conf: dict[str, Any], ndim: int, where: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of a configuration's ``architecture`` (or pre-2.2 ``UNet_class_name`` keys)."""
    if "architecture" not in conf:
        return _legacy_network_spec(conf, ndim, where)
    architecture = conf["architecture"]
    name = str(architecture.get("network_class_name", "")).split(".")[-1]
    kwargs = architecture.get("arch_kwargs", {})
    if name not in SUPPORTED_NETWORKS:
        raise AutoSegNetError(
            f"{where}: network {architecture.get('network_class_name')!r} is not supported; importable are "
            f"{', '.join(SUPPORTED_NETWORKS)} (dynamic_network_architectures)."
        )
    problems = _layer_problems(kwargs, ndim)
    if problems:
        raise AutoSegNetError(
            f"{where}: {name} with {'; '.join(problems)} cannot be imported (see docs/nnunet_import.md)."
        )
    depth_key = "n_blocks_per_stage" if name == "ResidualEncoderUNet" else "n_conv_per_stage"
    n_stages = int(kwargs["n_stages"])
    return NetworkSpec(
        name=name, ndim=ndim, features_per_stage=_per_stage(kwargs["features_per_stage"], n_stages),
        kernel_sizes=_per_stage_axes(kwargs["kernel_sizes"], n_stages, ndim),
        strides=_per_stage_axes(kwargs["strides"], n_stages, ndim),
        n_conv_per_stage=_per_stage(kwargs[depth_key], n_stages),
        n_conv_per_stage_decoder=_per_stage(kwargs["n_conv_per_stage_decoder"], n_stages - 1),
    )


def _layer_problems(kwargs: dict[str, Any], ndim: int) -> list[str]:
    """Settings that differ from the nnU-Net defaults our networks are built with."""
    problems = []
    if not str(kwargs.get("conv_op", f"Conv{ndim}d")).endswith(f"Conv{ndim}d"):
        problems.append(f"conv_op {kwargs.get('conv_op')!r}")
    norm = str(kwargs.get("norm_op", ""))
    norm_kwargs = kwargs.get("norm_op_kwargs") or {}
    if not norm.endswith(f"InstanceNorm{ndim}d") or not norm_kwargs.get("affine", False) or \
            float(norm_kwargs.get("eps", 1e-5)) != 1e-5:
        problems.append(f"norm_op {norm!r} {norm_kwargs}")
    if kwargs.get("dropout_op") is not None:
        problems.append(f"dropout_op {kwargs['dropout_op']!r}")
    nonlin_kwargs = kwargs.get("nonlin_kwargs") or {}
    slope = float(nonlin_kwargs.get("negative_slope", 0.01))
    if not str(kwargs.get("nonlin", "")).endswith("LeakyReLU") or slope != 0.01:
        problems.append(f"nonlin {kwargs.get('nonlin')!r} {nonlin_kwargs}")
    if not kwargs.get("conv_bias", True):
        problems.append("conv_bias False")
    if kwargs.get("nonlin_first"):
        problems.append("nonlin_first True")
    stem = kwargs.get("stem_channels")
    if stem is not None and stem != _per_stage(kwargs.get("features_per_stage", [stem]), 1)[0]:
        problems.append(f"stem_channels {stem}")
    return problems


def _legacy_network_spec(conf: dict[str, Any], ndim: int, where: str) -> NetworkSpec:
    name = str(conf.get("UNet_class_name", ""))
    if name not in SUPPORTED_NETWORKS:
        raise AutoSegNetError(
            f"{where}: network {name!r} is not supported; importable are {', '.join(SUPPORTED_NETWORKS)}."
        )
    try:
        kernels, strides = conf["conv_kernel_sizes"], conf["pool_op_kernel_sizes"]
        n_stages = len(kernels)
        base, top = int(conf["UNet_base_num_features"]), int(conf["unet_max_num_features"])
        return NetworkSpec(
            name=name, ndim=ndim, features_per_stage=[min(base * 2**s, top) for s in range(n_stages)],
            kernel_sizes=_per_stage_axes(kernels, n_stages, ndim), strides=_per_stage_axes(strides, n_stages, ndim),
            n_conv_per_stage=_per_stage(conf["n_conv_per_stage_encoder"], n_stages),
            n_conv_per_stage_decoder=_per_stage(conf["n_conv_per_stage_decoder"], n_stages - 1),
        )
    except KeyError as error:
        raise AutoSegNetError(f"{where}: field {error.args[0]!r} is missing from the network description.") from None


def resampling_from_nnunet(conf: dict[str, Any], where: str) -> ResamplingSettings:
    """Spline orders from the ``resampling_fn_*_kwargs``; nnU-Net's anisotropy threshold is 3."""
    settings = ResamplingSettings()
    for kind, attribute in (("data", "order_data"), ("seg", "order_seg"), ("probabilities", "order_probabilities")):
        function = conf.get(f"resampling_fn_{kind}", SUPPORTED_RESAMPLING[0])
        kwargs = conf.get(f"resampling_fn_{kind}_kwargs") or {}
        if function not in SUPPORTED_RESAMPLING:
            log.warning("%s: resampling function %s for %s is approximated by spline resampling (order %d).", where,
                        function, kind, getattr(settings, attribute))
        if "order" in kwargs:
            setattr(settings, attribute, int(kwargs["order"]))
        if kind == "data" and "order_z" in kwargs:
            settings.order_z_anisotropic = int(kwargs["order_z"])
        if kwargs.get("force_separate_z") is not None:
            log.warning("%s: force_separate_z=%s is not supported; the automatic rule (anisotropy > 3) is used.",
                        where, kwargs["force_separate_z"])
    return settings


def dataset_json_from_nnunet(raw: dict[str, Any], source: str) -> DatasetJson:
    """Our :class:`DatasetJson`; keys we do not know are dropped with a log line."""
    known = set(REQUIRED_KEYS) | set(OPTIONAL_KEYS) | set(METADATA_KEYS)
    dropped = sorted(set(raw) - known)
    if dropped:
        log.info("%s: not imported: %s", source, ", ".join(dropped))
    return DatasetJson.from_dict({k: v for k, v in raw.items() if k in known}, source)


# ----- checkpoints ---------------------------------------------------------------------------------
def load_nnunet_checkpoint(path: Path, trust: bool = False) -> dict[str, Any]:
    """An nnU-Net checkpoint dict, loaded without running code from it unless ``trust`` (the one place where
    AutoSegNet unpickles arbitrary objects, on the user's explicit ``--trust-checkpoints``)."""
    try:
        return load_plain(path)
    except UnsafeCheckpointError as refused:
        if not trust:
            raise AutoSegNetError(
                f"{path} holds Python objects besides tensors and plain data ({', '.join(refused.names)}); loading "
                "it would run code from the file. If you trust its source, pass --trust-checkpoints."
            ) from None
    log.warning("Loading %s with arbitrary Python objects (trusted by --trust-checkpoints).", path)
    return torch.load(path, map_location="cpu", weights_only=False)


def convert_checkpoint(data: dict[str, Any], conf: ConfigurationPlan, dataset_json: DatasetJson, extra_inputs: int,
                       source: str) -> dict[str, Any]:
    """Our checkpoint dict with the nnU-Net weights, checked to load strictly into our network."""
    if not isinstance(data, dict) or "network_weights" not in data:
        raise AutoSegNetError(f"{source} is not an nnU-Net checkpoint (no 'network_weights').")
    weights = {_strip_prefix(k): v for k, v in data["network_weights"].items()}
    network = build_network(conf.network, dataset_json.num_channels + extra_inputs,
                            dataset_json.num_segmentation_heads, deep_supervision=False, initialize=False)
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise AutoSegNetError(
            f"{source}: the weights do not fit the network described in plans.json: {str(error).splitlines()[0]} "
            "(a custom trainer with another architecture?)."
        ) from None
    axes = data.get("inference_allowed_mirroring_axes", tuple(range(conf.ndim)))
    return {
        "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "network_weights": network.state_dict(),
        "epoch": int(data.get("current_epoch", 0) or 0), "best_ema": _float_or_none(data.get("_best_ema")),
        "configuration": conf.name,
        "inference_allowed_mirroring_axes": None if axes is None else [int(a) for a in axes],
        "training_config": {"imported_from": "nnU-Net v2", "trainer_name": str(data.get("trainer_name", "unknown"))},
    }


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


# ----- small helpers -------------------------------------------------------------------------------
def _configuration_from_name(source: Path, raw_plans: dict[str, Any]) -> str:
    parts = split_model_folder_name(source.name)
    if parts is not None and parts[2] in raw_plans.get("configurations", {}):
        return parts[2]
    raise AutoSegNetError(
        f"Cannot tell the configuration of {source} from its name (expected Trainer__Plans__Configuration); "
        "pass it with -c."
    )


def _check_reader(reader: str, dataset_json: DatasetJson) -> None:
    for name in (reader, dataset_json.overwrite_image_reader_writer):
        if name and name not in SUPPORTED_READERS:
            raise AutoSegNetError(
                f"The model was trained with the {name} reader, whose array axis order differs from SimpleITK's; "
                f"importable are models trained with {', '.join(SUPPORTED_READERS)}."
            )


def _cascade_inputs(conf: ConfigurationPlan, dataset_json: DatasetJson) -> int:
    if conf.previous_stage is None:
        return 0
    ignore = dataset_json.ignore_label
    return len([v for v in dataset_json.label_values if v not in (0, ignore)])


def _per_stage(values: Any, n: int) -> list[int]:
    return [int(v) for v in values] if isinstance(values, (list, tuple)) else [int(values)] * n


def _per_stage_axes(values: Any, n: int, ndim: int) -> list[list[int]]:
    values = values if isinstance(values, (list, tuple)) else [values] * n
    return [[int(a) for a in v] if isinstance(v, (list, tuple)) else [int(v)] * ndim for v in values]


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
