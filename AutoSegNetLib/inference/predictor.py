"""In-memory prediction with a trained model: ``Predictor.from_model_folder(...).predict(image, geometry)``.

The predictor holds the loaded networks (one per fold), so predicting many cases loads and builds them once.
Per case: preprocess (crop, normalise, resample; for a cascade stage add the one-hot low-resolution
segmentation as input channels) -> sliding window over all folds and mirrored variants, averaging
probabilities -> revert to the input's grid -> label map -> postprocessing (if the model folder has rules).

Before any of that, an image the model cannot predict is refused (a 2D image -- one slice -- given to a 3D model),
and NaN / Inf voxels are replaced by 0 with a warning that counts them (an image without a single finite voxel
is refused). 0 because SimpleITK's NIfTI reader already turns stored NaN / Inf into 0, so the training cases
(usually NIfTI) showed the network 0 there; every format now gets the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.imageio.geometry import Geometry
from AutoSegNetLib.imageio.orientation import Reorientation, is_valid_orientation
from AutoSegNetLib.inference.compute import ComputeSettings, resolve_device
from AutoSegNetLib.inference.cpu_speed import prepare_for_cpu
from AutoSegNetLib.inference.labels import one_hot, probabilities_to_segmentation
from AutoSegNetLib.inference.model_folder import ModelFolder
from AutoSegNetLib.inference.sliding_window import SlidingWindowInferer, SlidingWindowSettings
from AutoSegNetLib.inference.uncertainty import UNCERTAINTY_KINDS, disagreement, normalised_entropy
from AutoSegNetLib.layout import checkpoint_file_name, model_folder_name, parse_folds, parse_model_folder_name

log = logging.getLogger(__name__)

#: What NaN and Inf voxels of an input image are replaced by (see the module docstring).
NON_FINITE_FILL = 0.0


@dataclass
class Prediction:
    """One case's result on the input's voxel grid.

    ``segmentation`` ``(Z, Y, X)`` uint8/uint16 label values; ``probabilities`` ``(K, Z, Y, X)`` float32 (softmax
    classes incl. background, or sigmoid regions), None when not asked for; ``uncertainty`` ``(Z, Y, X)`` float32
    in ``[0, 1]`` (see :mod:`AutoSegNetLib.inference.uncertainty`) or None.
    """

    segmentation: np.ndarray
    probabilities: np.ndarray | None
    uncertainty: np.ndarray | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Predictor:
    """A model folder's networks, ready to predict cases in memory.

    Build it with :meth:`from_model_folder`. ``inferer`` runs the sliding window over the folds' networks with
    one frozen :class:`~AutoSegNetLib.inference.sliding_window.SlidingWindowSettings` (:attr:`window`: the
    model's patch, the tile ``step``, mirroring test-time augmentation ``tta`` over the ``mirror_axes`` every
    fold allows, ``average`` ``"probabilities"`` (default, decision 0009) or ``"logits"`` (nnU-Net's way:
    softmax once, after averaging mirrors, folds and tiles), the ``device`` and the ``compute`` settings (resolved
    for the device; they change the speed but not the result)); the properties of the same names read them.
    ``previous`` is the low-resolution predictor of a cascade stage. An image stored in another orientation
    than the training cases (``fingerprint.json`` records theirs) gets a warning, or with ``reorient`` is turned
    into the training orientation by exact axis swaps and flips for prediction and turned back afterwards.
    """

    model: ModelFolder
    networks: list[nn.Module]
    folds: list[str]
    inferer: SlidingWindowInferer
    reorient: bool = False
    previous: Predictor | None = None
    postprocessing: dict[str, Any] | None = None
    preprocess: Callable[..., tuple[np.ndarray, np.ndarray | None, dict[str, Any]]] | None = field(
        default=None, repr=False
    )
    revert: Callable[..., np.ndarray] | None = field(default=None, repr=False)
    training_orientation: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.training_orientation = self.model.training_orientation()
        for network in self.networks:
            prepare_for_cpu(network, bool(self.compute.onednn), bool(self.compute.channels_last))
        if self.preprocess is None or self.revert is None:
            from AutoSegNetLib.preprocessing.case import preprocess_case, revert_probabilities

            self.preprocess = self.preprocess or preprocess_case
            self.revert = self.revert or revert_probabilities

    # ----- the sliding window's settings -------------------------------------------------------------
    @property
    def window(self) -> SlidingWindowSettings:
        return self.inferer.settings

    @property
    def device(self) -> torch.device:
        return self.window.device

    @property
    def step(self) -> float:
        return self.window.step

    @property
    def tta(self) -> bool:
        return self.window.tta

    @property
    def average(self) -> str:
        return self.window.average

    @property
    def compute(self) -> ComputeSettings:
        return self.window.compute

    @property
    def mirror_axes(self) -> list[int] | None:
        """The axes every fold allows mirroring along (None: none), mirrored when :attr:`tta` is on."""
        axes = self.window.mirror_axes
        return None if axes is None else list(axes)

    @classmethod
    def from_model_folder(
        cls,
        folder: str | Path,
        folds: Sequence[int | str] | int | str | None = (0,),
        checkpoint: str = "final",
        device: str | torch.device = "auto",
        tta: bool = True,
        step: float = 0.5,
        postprocess: bool = True,
        previous_stage_folder: str | Path | None = None,
        compute: ComputeSettings | None = None,
        average: str = "probabilities",
        reorient: bool = False,
    ) -> Predictor:
        """Load the networks of ``folds`` (``(0,)``, ``"all"``, ``[0, 1, 2, 3, 4]``; ``None`` = every fold with
        ``checkpoint_<checkpoint>.pth``) from a model folder.

        A cascade stage (``3d_cascade_fullres``) also loads its low-resolution stage, by default from the
        sibling folder ``AutoSegNet__<plans>__<previous_stage>``, with the same folds where it has them.
        ``postprocess`` applies the folder's ``postprocessing.json`` (if any) to the label maps; ``compute``
        tunes speed and memory (:class:`ComputeSettings`, default: the best choice for the device); ``average``
        is ``"probabilities"`` or ``"logits"`` and ``reorient`` handles images in another orientation than the
        training cases (see the class).
        """
        model = ModelFolder.open(folder)
        device = resolve_device(device)
        chosen = parse_folds(folds) or model.available_folds(checkpoint)
        if not chosen:
            raise AutoSegNetError(f"{model.folder} has no fold with {checkpoint_file_name(checkpoint)}; train a fold "
                                  "first.")
        networks, axes = _load_networks(model, chosen, checkpoint, device)
        window = SlidingWindowSettings.for_model(model, _common_axes(axes), device=device, step=step, tta=tta,
                                                 average=average, compute=compute or ComputeSettings())
        previous = None
        if model.configuration.previous_stage is not None:
            previous = _load_previous_stage(model, previous_stage_folder, chosen, checkpoint, window)
        log.info(
            "Loaded %s (%s), folds %s, checkpoint %s, on %s", model.folder.name, model.configuration_name,
            ", ".join(chosen), checkpoint, device,
        )
        return cls(
            model=model, networks=networks, folds=chosen, inferer=SlidingWindowInferer(window), reorient=reorient,
            previous=previous, postprocessing=model.postprocessing() if postprocess else None,
        )

    # ----- prediction --------------------------------------------------------------------------------
    def predict(self, image: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """Segment one image ``(C, Z, Y, X)`` with its geometry.

        Returns the label map ``(Z, Y, X)`` (uint8, or uint16 for more than 255 labels) and the probabilities
        ``(K, Z, Y, X)`` float32, both on the input's voxel grid.
        """
        result = self.predict_case(image, geometry, return_probabilities=True)
        return result.segmentation, result.probabilities

    def predict_case(
        self,
        image: np.ndarray,
        geometry: Geometry,
        *,
        return_probabilities: bool = True,
        uncertainty: str | None = None,
        postprocess: bool = True,
        case_name: str | None = None,
    ) -> Prediction:
        """Like :meth:`predict`, returning a :class:`Prediction`; ``uncertainty`` is ``"entropy"`` or
        ``"disagreement"`` (between folds and mirrored passes), or None. ``case_name`` names the image in
        warnings."""
        if uncertainty is not None and uncertainty not in UNCERTAINTY_KINDS:
            raise AutoSegNetError(f"Unknown uncertainty {uncertainty!r}; use one of {', '.join(UNCERTAINTY_KINDS)}.")
        self._refuse_2d_image_for_3d_model(image, case_name)
        image, warnings = _finite_image(image, f"case {case_name!r}" if case_name else "The image")
        reorientation, warning = self._orientation(geometry, case_name)
        if reorientation is None:
            result = self._predict(image, geometry, return_probabilities, uncertainty, postprocess)
        else:
            result = self._predict(reorientation.apply(image), reorientation.geometry(geometry, image.shape),
                                   return_probabilities, uncertainty, postprocess)
            result.segmentation, result.probabilities, result.uncertainty = (
                None if a is None else np.ascontiguousarray(reorientation.invert(a))
                for a in (result.segmentation, result.probabilities, result.uncertainty)
            )
        result.warnings.extend(warnings + ([warning] if warning else []))
        return result

    def _refuse_2d_image_for_3d_model(self, image: np.ndarray, case_name: str | None) -> None:
        """A 3D network pads a single slice up to its patch and returns a meaningless 2D result: refuse it early."""
        if self.model.configuration.ndim != 3 or np.ndim(image) != 4 or 1 not in np.shape(image)[1:]:
            return
        what = f"case {case_name!r}" if case_name else "the image"
        dataset = self.model.plans.dataset_name
        parsed = parse_model_folder_name(self.model.folder.name)
        two_d = self.model.folder.parent / model_folder_name(parsed[0] if parsed else self.model.plans.plans_name, "2d")
        trained = (f"(trained: {two_d})" if two_d.is_dir() else
                   f"(none is trained yet: `autosegnet train {dataset} 2d all` first)")
        raise AutoSegNetError(
            f"{what} is 2D (1 slice) but the model is {self.model.configuration_name}, which needs 3D images "
            f"(shape {list(np.shape(image)[1:])}, z, y, x). Predict it with a 2d model {trained}: "
            f"`autosegnet predict -i ... -o ... -d {dataset} -c 2d`."
        )

    def _orientation(self, geometry: Geometry, case_name: str | None) -> tuple[Reorientation | None, str | None]:
        """How to handle an image whose orientation differs from the training cases': ``(reorientation or None,
        warning or None)``; both None when it matches, the data are 2D or the training orientation is unknown."""
        target = self.training_orientation
        if target is None or geometry.is_2d or geometry.orientation_code() == target:
            return None, None
        code = geometry.orientation_code()
        what = f"{case_name!r}" if case_name else "The image"
        if not is_valid_orientation(code):
            warning = (f"{what} is stored obliquely (orientation {code}) and cannot be turned into the training "
                       f"cases' {target} by swapping and flipping axes; it is predicted as stored. Resample it to "
                       f"the training orientation if the segmentation looks wrong.")
            log.warning(warning)
            return None, warning
        if self.reorient:
            log.info("%s is stored in orientation %s; predicting it in the training cases' %s and turning the result "
                     "back.", what, code, target)
            return Reorientation.between(code, target), None
        warning = (f"{what} is stored in orientation {code} (ITK x, y, z axes, LPS) but the model was trained on "
                   f"{target} images: the network sees it mirrored or with swapped axes, which can make the "
                   f"segmentation much worse. Predict with --reorient (Predictor reorient=True) to turn it into "
                   f"{target} and back exactly, or check the image header.")
        log.warning(warning)
        return None, warning

    def _predict(self, image: np.ndarray, geometry: Geometry, return_probabilities: bool, uncertainty: str | None,
                 postprocess: bool) -> Prediction:
        start = time.perf_counter()
        model = self.model
        configuration = model.configuration
        previous_seg = None
        if self.previous is not None:
            previous_seg = self.previous._predict(image, geometry, return_probabilities=False, uncertainty=None,
                                                  postprocess=False).segmentation
        # a copy: preprocess_case normalises an uncropped float32 image in place, which would change the caller's
        # array (a Slicer volume); drop the copy once preprocessing never writes into its input
        data, seg, properties = self.preprocess(
            np.array(image, copy=True), previous_seg, geometry, model.plans, configuration, model.dataset_json,
            input_hash="prediction",
        )
        if model.cascade_label_values:
            data = np.concatenate([data, one_hot(seg[0], model.cascade_label_values)])
        del seg
        probabilities, member_entropy = self._sliding_window(data, with_member_entropy=uncertainty == "disagreement")
        del data
        uncertainty_map = None
        if uncertainty is not None:
            uncertainty_map = normalised_entropy(probabilities, model.regions)
            if member_entropy is not None:
                uncertainty_map = disagreement(uncertainty_map, member_entropy)
            uncertainty_map = self.revert(uncertainty_map.cpu().numpy()[None], properties, model.plans, configuration,
                                          regions=True)[0]
        probabilities = self.revert(probabilities.cpu().numpy(), properties, model.plans, configuration,
                                    regions=model.regions)
        order = model.dataset_json.regions_class_order if model.regions else None
        segmentation = probabilities_to_segmentation(probabilities, order)
        if postprocess and self.postprocessing:
            from AutoSegNetLib.postprocessing.rules import apply_postprocessing

            segmentation = apply_postprocessing(segmentation, self.postprocessing)
        return Prediction(
            segmentation=segmentation,
            probabilities=probabilities if return_probabilities else None,
            uncertainty=uncertainty_map,
            seconds=time.perf_counter() - start,
        )

    def _sliding_window(self, data: np.ndarray, with_member_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        image = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))
        result = self.inferer(self.networks, image, with_member_entropy=with_member_entropy)
        return result if isinstance(result, tuple) else (result, None)


def non_finite_warning(what: str, nan: int, inf: int, voxels: int) -> str | None:
    """The warning for ``nan`` NaN and ``inf`` Inf voxels (of ``voxels``) in ``what`` (None when there are none);
    :class:`AutoSegNetError` when no voxel is finite."""
    if nan + inf == 0:
        return None
    if nan + inf >= voxels:
        raise AutoSegNetError(
            f"{what} holds only NaN or Inf values ({nan} NaN and {inf} Inf voxels of {voxels}): there is nothing to "
            "segment. Fix or re-export the image, or leave the case out."
        )
    return (f"{what}: {nan} NaN and {inf} Inf voxels (of {voxels}) are replaced by {NON_FINITE_FILL:g} before "
            "prediction (as SimpleITK's NIfTI reader does); check the image if they mark something.")


def _finite_image(image: np.ndarray, what: str) -> tuple[np.ndarray, list[str]]:
    """``image`` ``(C, Z, Y, X)`` with NaN / Inf replaced by :data:`NON_FINITE_FILL` (a copy; the caller's array is
    left alone) and the warnings, one per channel that had any; an error for a channel without a finite voxel."""
    image = np.asarray(image)
    if image.dtype.kind != "f" or image.ndim != 4:
        return image, []
    bad = ~np.isfinite(image)
    if not bad.any():
        return image, []
    warnings = []
    for channel in range(image.shape[0]):
        nan = int(np.isnan(image[channel]).sum())
        label = f"{what}, channel {channel}" if image.shape[0] > 1 else what
        warning = non_finite_warning(label, nan, int(bad[channel].sum()) - nan, image[channel].size)
        if warning:
            log.warning(warning)
            warnings.append(warning)
    return np.where(bad, np.asarray(NON_FINITE_FILL, dtype=image.dtype), image), warnings


def _load_networks(model: ModelFolder, folds: list[str], checkpoint: str, device: torch.device
                   ) -> tuple[list[nn.Module], list[list[int] | None]]:
    """The networks of ``folds`` on ``device`` and the mirror axes each allows."""
    networks, axes = [], []
    for fold in folds:
        network, mirror_axes = model.load_network(fold, checkpoint)
        networks.append(network.to(device))
        axes.append(mirror_axes)
    return networks, axes


def _common_axes(axes: list[list[int] | None]) -> list[int] | None:
    """Mirror axes every fold allows (None if any fold allows none)."""
    if any(a is None for a in axes):
        return None
    common = set(axes[0])
    for a in axes[1:]:
        common &= set(a)
    return sorted(common)


def _load_previous_stage(
    model: ModelFolder, folder: str | Path | None, folds: list[str], checkpoint: str, window: SlidingWindowSettings,
) -> Predictor:
    """The low-resolution stage of a cascade stage, predicting as ``window`` says (its own patch and mirror axes)."""
    stage = model.configuration.previous_stage
    if folder is None:
        parsed = parse_model_folder_name(model.folder.name)
        plans_name = parsed[0] if parsed else model.plans.plans_name
        folder = model.folder.parent / model_folder_name(plans_name, stage)
    folder = Path(folder)
    if not folder.is_dir():
        raise AutoSegNetError(
            f"{model.configuration_name} is a cascade stage and needs the {stage!r} model, expected at {folder}. "
            f"Train {stage} first (or pass its folder)."
        )
    previous_model = ModelFolder.open(folder, configuration=stage)
    have = previous_model.available_folds(checkpoint)
    use = [f for f in folds if f in have] or have
    return Predictor.from_model_folder(folder, use, checkpoint, window.device, window.tta, window.step,
                                       postprocess=False, compute=window.compute, average=window.average)
