"""Experiment planners: from a fingerprint and dataset.json to :class:`Plans`, and their registry.

:class:`ExperimentPlanner` with its default settings decides exactly like nnU-Net v2.8's default planner
(``ExperimentPlanner``, plans ``nnUNetPlans``); the ResEnc presets (``resenc-m/l/xl``) follow
``nnUNetPlannerResEncM/L/XL``. A custom planner is a :func:`dataclasses.replace` of a registered one or a
small subclass that overrides a step (``target_spacing``, ``network``, ``plan_configuration``, ...), added
with :func:`register_planner`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from AutoSegNetLib.dataset import DatasetJson
from AutoSegNetLib.errors import AutoSegNetError, unknown_name_error
from AutoSegNetLib.fingerprint import Fingerprint
from AutoSegNetLib.imageio import io_for
from AutoSegNetLib.planning.memory import feature_map_size
from AutoSegNetLib.planning.normalization import normalization_plan
from AutoSegNetLib.planning.patch_size import (
    ImagesTooSmallError,
    PatchFit,
    batch_size_for,
    fit_patch,
    require_poolable,
)
from AutoSegNetLib.planning.plans import ConfigurationPlan, Plans
from AutoSegNetLib.planning.spacing import fullres_target_spacing, median_resampled_shape, transpose_for
from AutoSegNetLib.planning.topology import Topology

log = logging.getLogger(__name__)

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


@dataclass(frozen=True)
class MemoryReference:
    """Feature-map elements known to fit ``batch_3d`` / ``batch_2d`` patches in ``gb`` GB of GPU memory."""

    value_3d: float
    value_2d: float
    gb: float
    batch_3d: int = 2
    batch_2d: int = 12


@dataclass
class ExperimentPlanner:
    """Planner settings (defaults: nnU-Net v2.8 ``ExperimentPlanner``) and the planning steps.

    ``fit_batch_size``: the patch shrinks until this many patches fit the reference (nnU-Net's plain planner
    uses the minimum batch size 2; ``None`` means the reference batch size, as the ResEnc planners do).
    """

    name: str = "default"
    plans_name: str = "nnUNetPlans"
    network_name: str = "PlainConvUNet"
    gpu_memory_target_gb: float = 8.0
    reference: MemoryReference = MemoryReference(560_000_000, 85_000_000, 8.0)
    fit_batch_size: int | None = 2
    base_features: int = 32
    max_features_2d: int = 512
    max_features_3d: int = 320
    encoder_depth: tuple[int, ...] = (2,) * 14
    decoder_depth: tuple[int, ...] = (2,) * 13
    min_feature_map_size: int = 4
    min_batch_size: int = 2
    max_dataset_covered: float = 0.05
    lowres_threshold: float = 0.25
    lowres_spacing_factor: float = 1.03
    lowres_min_voxel_ratio: float = 2.0
    anisotropy_threshold: float = 3.0
    #: plans name whose ``2d`` / ``3d_fullres`` preprocessed data this planner reuses (same spacing), if any
    shared_data_plans_name: str | None = None
    description: str = field(default="nnU-Net v2 default: plain conv U-Net, 8 GB target", compare=False)

    # ----- the whole plan ---------------------------------------------------------------------------
    def plan(self, fingerprint: Fingerprint, dataset_json: DatasetJson, dataset_name: str | None = None) -> Plans:
        """All warranted configurations (``2d``; ``3d_fullres`` for 3D data; ``3d_lowres`` +
        ``3d_cascade_fullres`` when the fullres patch covers less than ``lowres_threshold`` of the median)."""
        if fingerprint.num_cases == 0:
            raise AutoSegNetError(f"The fingerprint of {fingerprint.dataset_name} lists no cases; re-run fingerprint.")
        spacing = self.target_spacing(fingerprint)
        forward, backward = transpose_for(spacing)
        median_shape = median_resampled_shape(fingerprint.spacings, fingerprint.shapes_after_crop, spacing)[forward]
        spacing = spacing[forward]
        context = _Context(fingerprint, dataset_json, float(np.prod(median_shape, dtype=np.float64)) *
                           fingerprint.num_cases)
        configurations: dict[str, ConfigurationPlan] = {}
        if median_shape[0] != 1:
            fullres = self.plan_configuration("3d_fullres", spacing, median_shape, context.dataset_voxels, context)
            lowres = self.plan_lowres(fullres, median_shape, context)
            fullres.batch_dice = lowres is not None
            if lowres is not None:
                lowres.next_stage = "3d_cascade_fullres"
                configurations["3d_lowres"] = lowres
            configurations["3d_fullres"] = fullres
            if lowres is not None:
                cascade = copy.deepcopy(fullres)
                cascade.name, cascade.previous_stage = "3d_cascade_fullres", "3d_lowres"
                configurations["3d_cascade_fullres"] = cascade
        plan_2d = self._plan_2d(spacing, median_shape, context, have_3d=bool(configurations))
        if plan_2d is not None:
            configurations = {"2d": plan_2d, **configurations}
        return Plans(
            dataset_name=dataset_name or fingerprint.dataset_name,
            plans_name=self.plans_name,
            planner=self.name,
            transpose_forward=forward,
            transpose_backward=backward,
            original_median_spacing=[float(v) for v in np.median(fingerprint.spacings, axis=0)[forward]],
            original_median_shape=[float(v) for v in np.median(fingerprint.shapes_after_crop, axis=0)[forward]],
            image_reader_writer=io_for(dataset_json.file_ending, dataset_json.overwrite_image_reader_writer).name,
            foreground_intensity_properties=fingerprint.intensity_properties_dict(),
            configurations=configurations,
            gpu_memory_target_gb=float(self.gpu_memory_target_gb),
        )

    def _plan_2d(self, spacing: np.ndarray, median_shape: np.ndarray, context: _Context,
                 have_3d: bool) -> ConfigurationPlan | None:
        """``2d``; None (with a warning) when its slices are too small for a U-Net but a 3D configuration exists."""
        try:
            plan_2d = self.plan_configuration("2d", spacing[1:], median_shape[1:], context.dataset_voxels, context)
        except ImagesTooSmallError as exc:
            if not have_3d:
                raise
            log.warning("No 2d configuration: %s", exc)
            return None
        plan_2d.batch_dice = True
        return plan_2d

    # ----- steps (override these in a custom planner) ------------------------------------------------
    def target_spacing(self, fingerprint: Fingerprint) -> np.ndarray:
        """``3d_fullres`` spacing in raw ``(z, y, x)`` order (mm)."""
        return fullres_target_spacing(fingerprint.spacings, fingerprint.shapes_after_crop, self.anisotropy_threshold)

    def plan_lowres(self, fullres: ConfigurationPlan, median_shape: np.ndarray,
                    context: _Context) -> ConfigurationPlan | None:
        """``3d_lowres``: grow the spacing by ``lowres_spacing_factor`` per step (only the axes more than 2x
        finer than the coarsest while there are such, else all) until the patch covers ``lowres_threshold`` of
        the median image; dropped if the median image shrank less than ``lowres_min_voxel_ratio`` x."""
        fullres_spacing = np.asarray(fullres.spacing, dtype=np.float64)
        spacing = fullres_spacing.copy()
        median_voxels = float(np.prod(median_shape, dtype=np.float64))
        patch_voxels = float(np.prod(fullres.patch_size, dtype=np.float64))
        lowres = None
        while patch_voxels / median_voxels < self.lowres_threshold:
            fine = spacing.max() / spacing > 2
            if np.any(fine):
                spacing[fine] *= self.lowres_spacing_factor
            else:
                spacing *= self.lowres_spacing_factor
            shape = fullres_spacing / spacing * median_shape
            median_voxels = float(np.prod(shape, dtype=np.float64))
            try:
                lowres = self.plan_configuration("3d_lowres", spacing.copy(), np.array([round(s) for s in shape]),
                                                 median_voxels * context.fingerprint.num_cases, context)
            except ImagesTooSmallError:
                break  # coarser would be too small for a U-Net: keep the last lowres candidate (if any)
            patch_voxels = float(np.prod(lowres.patch_size, dtype=np.int64))
            log.debug("3d_lowres candidate: spacing %s, patch %s", spacing.round(4).tolist(), lowres.patch_size)
        if np.prod(median_shape, dtype=np.float64) / median_voxels < self.lowres_min_voxel_ratio:
            return None
        if lowres is not None:
            lowres.batch_dice = False
        return lowres

    def plan_configuration(self, name: str, spacing: Sequence[float], median_shape: Sequence[float],
                           dataset_voxels: float, context: _Context) -> ConfigurationPlan:
        """One configuration at ``spacing`` (transposed, mm) for images of ``median_shape`` (voxels)."""
        if not all(s > 0 for s in spacing):
            raise AutoSegNetError(f"Planned spacing must be positive, got {list(spacing)} for {name}.")
        ndim = len(spacing)
        ref_value = self.reference.value_3d if ndim == 3 else self.reference.value_2d
        ref_batch = self.reference.batch_3d if ndim == 3 else self.reference.batch_2d
        reference = ref_value * (self.gpu_memory_target_gb / self.reference.gb)

        def estimate(topology: Topology) -> int:
            return feature_map_size(self.network(topology, ndim), topology.patch_size,
                                    context.dataset_json.num_channels, len(context.dataset_json.labels))

        def too_large(elements: int) -> bool:
            if self.fit_batch_size is None:
                return elements > reference
            return elements / ref_batch * self.fit_batch_size > reference

        require_poolable(spacing, median_shape, self.min_feature_map_size, name)
        fit: PatchFit = fit_patch(spacing, median_shape, estimate, too_large, self.min_feature_map_size)
        patch = [int(p) for p in fit.topology.patch_size]
        batch = batch_size_for(reference, fit.estimate, ref_batch, dataset_voxels, patch,
                               self.max_dataset_covered, self.min_batch_size)
        schemes, use_mask = normalization_plan(context.dataset_json.channel_names,
                                               context.fingerprint.median_relative_size_after_crop)
        return ConfigurationPlan(
            name=name,
            data_identifier=self.data_identifier(name),
            spacing=[float(s) for s in spacing],
            patch_size=patch,
            batch_size=batch,
            median_image_size=[float(s) for s in median_shape[:ndim]],
            normalization_schemes=schemes,
            use_mask_for_norm=use_mask,
            batch_dice=False,
            network=self.network(fit.topology, ndim),
        )

    def network(self, topology: Topology, ndim: int) -> dict:
        """The :class:`~AutoSegNetLib.network.NetworkSpec` (dict form) for ``topology``."""
        n = topology.num_stages
        max_features = self.max_features_3d if ndim == 3 else self.max_features_2d
        return {
            "name": self.network_name,
            "ndim": ndim,
            "features_per_stage": [min(max_features, self.base_features * 2**i) for i in range(n)],
            "kernel_sizes": [list(k) for k in topology.kernel_sizes],
            "strides": [list(s) for s in topology.strides],
            "n_conv_per_stage": list(_take(self.encoder_depth, n, "encoder_depth")),
            "n_conv_per_stage_decoder": list(_take(self.decoder_depth, n - 1, "decoder_depth")),
        }

    def data_identifier(self, configuration: str) -> str:
        """Folder name of a configuration's preprocessed data (shared when the data would be identical)."""
        if self.shared_data_plans_name and configuration in ("2d", "3d_fullres"):
            return f"{self.shared_data_plans_name}_{configuration}"
        return f"{self.plans_name}_{configuration}"

    def with_gpu_memory(self, gb: float) -> ExperimentPlanner:
        """This planner with another GPU memory target (GB); the reference values scale with it."""
        return dataclasses.replace(self, gpu_memory_target_gb=float(gb))


@dataclass
class _Context:
    """What every configuration of one plan shares."""

    fingerprint: Fingerprint
    dataset_json: DatasetJson
    dataset_voxels: float


def _take(depths: Sequence[int], n: int, what: str) -> Sequence[int]:
    if len(depths) < n:
        raise AutoSegNetError(f"The planner's {what} lists {len(depths)} stages but the network needs {n}.")
    return depths[:n]


# ----- presets and registry -------------------------------------------------------------------------------
def _resenc(name: str, gb: float, value_3d: float, value_2d: float, plans: str, what: str) -> ExperimentPlanner:
    return ExperimentPlanner(
        name=name,
        plans_name=plans,
        network_name="ResidualEncoderUNet",
        gpu_memory_target_gb=gb,
        reference=MemoryReference(value_3d, value_2d, gb),
        fit_batch_size=None,
        encoder_depth=(1, 3, 4, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6),
        decoder_depth=(1,) * 12,
        max_dataset_covered=1.0,
        shared_data_plans_name="nnUNetPlans",
        description=what,
    )


PLANNERS: dict[str, Callable[[], ExperimentPlanner]] = {
    "default": ExperimentPlanner,
    "resenc-m": lambda: _resenc("resenc-m", 8, 680_000_000, 135_000_000, "nnUNetResEncUNetMPlans",
                                "residual encoder U-Net, 8 GB target (nnUNetPlannerResEncM)"),
    "resenc-l": lambda: _resenc("resenc-l", 24, 2_100_000_000, 380_000_000, "nnUNetResEncUNetLPlans",
                                "residual encoder U-Net, 24 GB target (nnUNetPlannerResEncL)"),
    "resenc-xl": lambda: _resenc("resenc-xl", 40, 3_600_000_000, 560_000_000, "nnUNetResEncUNetXLPlans",
                                 "residual encoder U-Net, 40 GB target (nnUNetPlannerResEncXL)"),
}


def register_planner(name: str, planner: ExperimentPlanner | Callable[[], ExperimentPlanner]) -> None:
    """Add a planner under ``name``: an :class:`ExperimentPlanner` (instance or subclass) or a factory."""
    if isinstance(planner, ExperimentPlanner):
        instance = planner
        PLANNERS[name] = lambda: dataclasses.replace(instance)
    else:
        PLANNERS[name] = planner


def get_planner(name: str) -> ExperimentPlanner:
    """A fresh planner registered as ``name`` (error with the closest name if unknown)."""
    if name not in PLANNERS:
        raise unknown_name_error("planner", name, PLANNERS)
    planner = PLANNERS[name]()
    if planner.name != name:
        planner = dataclasses.replace(planner, name=name)
    return planner
