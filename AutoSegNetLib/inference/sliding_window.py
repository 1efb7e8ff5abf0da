"""Sliding-window prediction of a whole image: padding, Gaussian-weighted tiles, batched tiles, mirroring TTA.

Three layers, as MONAI's ``sliding_window_inference`` / ``SlidingWindowInferer``:

- :class:`SlidingWindowSettings`: every setting in one frozen object (patch, step, mirroring, blending, averaging,
  devices and speed knobs). :meth:`SlidingWindowSettings.for_model` is the one place that derives them from a
  model folder (prediction and training's final validation both use it).
- :func:`sliding_window_predict`: the pure function (networks + image tensor + settings -> ``(K, Z, Y, X)``).
- :class:`SlidingWindowInferer`: the settings bound once, called with the network(s) and each image; the
  :class:`~AutoSegNetLib.inference.predictor.Predictor` holds one.

The tiles are blended by :class:`~AutoSegNetLib.inference.blend.TileBlend`; the members of each batch of tiles are
computed and averaged by :func:`~AutoSegNetLib.inference.members.predict_tiles`.

Members and averaging: each network (fold) is run on every mirrored variant of a tile; these are the ensemble
*members*. Their outputs are averaged in the space ``average`` names: ``"probabilities"`` (the default, after
softmax/sigmoid) or ``"logits"`` (nnU-Net's mirroring, fold and tile averaging, with the softmax/sigmoid applied
once to the blended average; without ``nonlin`` logits are all there is). Overlapping tiles are blended with
a Gaussian importance map. The accumulator is one float32 ``(K, Z, Y, X)`` array plus one ``(Z, Y, X)``
weight map, however many folds and mirrored variants are averaged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.blend import TileBlend
from AutoSegNetLib.inference.compute import ComputeSettings
from AutoSegNetLib.inference.members import apply_nonlin_, member_threads_context, predict_tiles
from AutoSegNetLib.inference.tiles import mirror_combinations

if TYPE_CHECKING:
    from AutoSegNetLib.inference.model_folder import ModelFolder

log = logging.getLogger(__name__)

#: ``torch.OutOfMemoryError`` (torch >= 2.5) or its CUDA-only predecessor.
OutOfMemoryError: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

NONLINS = (None, "softmax", "sigmoid")
AVERAGES = ("probabilities", "logits")
_COMPUTE_FIELDS = frozenset(f.name for f in dataclasses.fields(ComputeSettings))


class SlidingWindowSettingsError(AutoSegNetError, ValueError):
    """A sliding-window setting out of range: a user error (``--step``, ``--average``), and a ``ValueError`` to
    callers of the pure function."""


@dataclass(frozen=True)
class SlidingWindowSettings:
    """How :func:`sliding_window_predict` predicts an image, in one frozen object.

    What is computed:

    - ``patch_size``: the tile, 3 entries for a 3D network; 2 entries ``(Y, X)`` for a 2D network, which then
      predicts the image slice by slice along ``Z``.
    - ``step``: tile step as a fraction of the patch, in ``(0, 1]`` (nnU-Net: 0.5).
    - ``mirror_axes``: the spatial axes the networks allow mirroring along (None: none). With ``tta`` every
      combination of them is a member (``2 ** len(mirror_axes)`` passes per network); without, only the
      unmirrored pass.
    - ``gaussian``: blend overlapping tiles with the Gaussian importance map (nnU-Net); False weighs every voxel
      of a tile alike.
    - ``nonlin``: ``None`` for averaged logits, ``"softmax"`` or ``"sigmoid"`` (regions) for probabilities.
    - ``average``: ``"probabilities"`` averages the members' and tiles' softmax/sigmoid outputs; ``"logits"``
      averages their logits and applies ``nonlin`` once at the end, exactly as nnU-Net (docs/decisions/0009).
      The two give the same label map except at near-ties.

    How (speed and memory; the result only up to float rounding):

    - ``compute``: :class:`~AutoSegNetLib.inference.compute.ComputeSettings`: tiles per forward pass
      (``tile_batch``), mirrored variants of those tiles in the same pass (``batch_mirrors``), members side by
      side on CPU threads (``member_threads``, see :func:`~AutoSegNetLib.inference.members.threaded_member_outputs`).
      Its ``None`` fields are resolved for the device as soon as the device is known.
    - ``device``: where the networks run (None: where the first network's parameters are).
    - ``results_device``: where the accumulator lives (None: ``device``).
    - ``amp``: autocast the forward passes (None: on for CUDA, as nnU-Net); accumulation stays float32.
    """

    patch_size: tuple[int, ...]
    step: float = 0.5
    mirror_axes: tuple[int, ...] | None = None
    tta: bool = True
    gaussian: bool = True
    nonlin: str | None = None
    average: str = "probabilities"
    compute: ComputeSettings = ComputeSettings()
    device: torch.device | None = None
    results_device: torch.device | None = None
    amp: bool | None = None

    def __post_init__(self) -> None:
        set_field = functools.partial(object.__setattr__, self)
        set_field("patch_size", tuple(int(p) for p in self.patch_size))
        if self.mirror_axes is not None:
            set_field("mirror_axes", tuple(int(a) for a in self.mirror_axes))
        for name in ("device", "results_device"):
            if getattr(self, name) is not None:
                set_field(name, torch.device(getattr(self, name)))
        if self.device is not None:
            set_field("compute", self.compute.resolved(self.device))
        if len(self.patch_size) not in (2, 3):
            raise SlidingWindowSettingsError(
                f"patch_size must have 2 (slice by slice) or 3 entries, got {list(self.patch_size)}."
            )
        if not 0 < self.step <= 1:
            raise SlidingWindowSettingsError(
                f"The tile step must be in (0, 1] (a fraction of the patch size), got {self.step}."
            )
        if self.nonlin not in NONLINS:
            raise SlidingWindowSettingsError(f"nonlin must be one of {NONLINS}, got {self.nonlin!r}.")
        if self.average not in AVERAGES:
            raise SlidingWindowSettingsError(
                f"Unknown average {self.average!r}: average must be one of {', '.join(AVERAGES)}."
            )

    @classmethod
    def for_model(cls, model: ModelFolder, mirror_axes: Sequence[int] | None, **knobs: Any) -> SlidingWindowSettings:
        """The settings that predict with ``model``'s networks: its configuration's patch as the model folder's
        ``plans.json`` records it (the patch the networks were trained with, also after ``train --patch-size``),
        sigmoid for regions else softmax, and the ``mirror_axes`` the networks allow. ``knobs`` set the other
        fields (``step``, ``tta``, ``average``, ``compute``, ``device``, ...). Prediction and training's final
        validation both take their settings from here."""
        return cls(patch_size=tuple(model.configuration.patch_size), mirror_axes=mirror_axes,
                   nonlin="sigmoid" if model.regions else "softmax", **knobs)

    @property
    def tta_axes(self) -> tuple[int, ...]:
        """The axes mirrored for test-time augmentation: ``mirror_axes`` with ``tta``, none without."""
        return (self.mirror_axes or ()) if self.tta else ()

    @property
    def slice_mode(self) -> bool:
        """A 2D patch: the image is predicted slice by slice along its first axis."""
        return len(self.patch_size) == 2

    @property
    def window(self) -> tuple[int, ...]:
        """The tile in the image's three axes: ``(1, Y, X)`` in slice mode, else ``patch_size``."""
        return (1, *self.patch_size) if self.slice_mode else self.patch_size

    def on(self, device: torch.device) -> SlidingWindowSettings:
        """These settings with every automatic choice made for running on ``device`` (results device, amp,
        compute)."""
        results_device = self.results_device if self.results_device is not None else device
        amp = device.type == "cuda" if self.amp is None else self.amp
        return dataclasses.replace(self, device=device, results_device=results_device, amp=amp)


def window_settings(settings: SlidingWindowSettings | None = None, **fields: Any) -> SlidingWindowSettings:
    """``settings`` with ``fields`` changed, or new settings made of ``fields``. The fields of
    :class:`~AutoSegNetLib.inference.compute.ComputeSettings` (``tile_batch``, ``batch_mirrors``,
    ``member_threads``, ...) may be given directly: ``window_settings(patch_size=(8, 8, 8), tile_batch=2)``."""
    compute = {name: fields.pop(name) for name in _COMPUTE_FIELDS & fields.keys()}
    if settings is None:
        return SlidingWindowSettings(compute=ComputeSettings(**compute), **fields)
    if compute:
        fields["compute"] = dataclasses.replace(settings.compute, **compute)
    return dataclasses.replace(settings, **fields) if fields else settings


@dataclass(frozen=True)
class SlidingWindowInferer:
    """:func:`sliding_window_predict` with its settings bound once: ``SlidingWindowInferer(settings)(networks,
    image)`` (as MONAI's ``SlidingWindowInferer`` wraps ``sliding_window_inference``)."""

    settings: SlidingWindowSettings

    def __call__(
        self, network: nn.Module | Sequence[nn.Module], image: torch.Tensor, *, with_member_entropy: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """See :func:`sliding_window_predict`."""
        return sliding_window_predict(network, image, self.settings, with_member_entropy=with_member_entropy)


@dataclass(frozen=True)
class WindowAttempt:
    """How one attempt runs: where the accumulator lives, tiles per forward pass, mirrors in one batch."""

    results_device: torch.device
    tile_batch: int
    batch_mirrors: bool

    def describe(self) -> str:
        mirrors = "mirrored variants batched" if self.batch_mirrors else "mirrored variants one by one"
        return f"accumulating on {self.results_device.type}, {self.tile_batch} tile(s) at once, {mirrors}"


def fallback_plan(results_device: torch.device, tile_batch: int, batch_mirrors: bool) -> list[WindowAttempt]:
    """Attempts in order after out-of-memory errors: as asked; accumulating on the CPU; then fewer tiles per
    forward pass (halving down to 1); finally mirrored variants one at a time."""
    cpu = torch.device("cpu")
    plan = [WindowAttempt(results_device, tile_batch, batch_mirrors)]
    if results_device.type != "cpu":
        plan.append(WindowAttempt(cpu, tile_batch, batch_mirrors))
    batch = tile_batch
    while batch > 1:
        batch = max(1, batch // 2)
        plan.append(WindowAttempt(cpu, batch, batch_mirrors))
    if batch_mirrors:
        plan.append(WindowAttempt(cpu, 1, False))
    return plan


def sliding_window_predict(
    network: nn.Module | Sequence[nn.Module],
    image: torch.Tensor,
    settings: SlidingWindowSettings | None = None,
    *,
    with_member_entropy: bool = False,
    **fields: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Predict a whole image ``(C, Z, Y, X)`` tile by tile as ``settings`` say (:class:`SlidingWindowSettings`);
    returns ``(K, Z, Y, X)`` float32 on the results device.

    - ``network``: one network or several (fold ensemble), in eval mode and already on the settings' device.
    - ``fields``: single settings changed for this call, or all of them without ``settings``
      (:func:`window_settings`): ``sliding_window_predict(net, image, patch_size=(8, 8, 8), mirror_axes=[0])``.
    - ``with_member_entropy``: also return the blended mean of the members' normalised entropies ``(Z, Y, X)``
      (needs ``nonlin``), for the disagreement map of :mod:`AutoSegNetLib.inference.uncertainty`.

    Images smaller than the patch are padded with zeros (centred) and the padding is cut off again. A single tile
    covering the whole (padded) image is copied without weighting, so an image no larger than the patch gives
    exactly the (padded, cropped) output of one forward pass. On a CUDA out-of-memory error the prediction is
    retried following :func:`fallback_plan`, with a log line each time.
    """
    settings = window_settings(settings, **fields)
    networks = [network] if isinstance(network, nn.Module) else list(network)
    _check_inputs(networks, image, settings, with_member_entropy)
    settings = settings.on(settings.device if settings.device is not None else next(networks[0].parameters()).device)
    device, compute = settings.device, settings.compute
    plan = fallback_plan(settings.results_device, compute.tile_batch, compute.batch_mirrors)
    for index, attempt in enumerate(plan):
        try:
            result = _predict_windows(networks, image, settings, attempt, with_member_entropy)
            if settings.average == "logits" and settings.nonlin is not None:
                apply_nonlin_(result[0] if isinstance(result, tuple) else result, settings.nonlin)
            return result
        except OutOfMemoryError as error:
            _release_cached_memory(device)
            if index + 1 == len(plan):
                raise AutoSegNetError(
                    f"Out of memory on {device} even with one tile at a time ({error}). Predict on the CPU "
                    "(--device cpu) or free memory used by other programs."
                ) from error
            log.warning(
                "Out of memory on %s (%s); retrying %s.", device, attempt.describe(), plan[index + 1].describe()
            )
    raise AssertionError("unreachable")


def _check_inputs(networks: list[nn.Module], image: torch.Tensor, settings: SlidingWindowSettings,
                  with_member_entropy: bool) -> None:
    if not networks:
        raise ValueError("sliding_window_predict needs at least one network.")
    if with_member_entropy and settings.nonlin is None:
        raise ValueError("with_member_entropy needs probabilities: pass nonlin='softmax' or 'sigmoid'.")
    if image.ndim != 4:
        raise ValueError(f"image must be (C, Z, Y, X), got shape {tuple(image.shape)}.")


def _predict_windows(
    networks: list[nn.Module],
    image: torch.Tensor,
    settings: SlidingWindowSettings,
    attempt: WindowAttempt,
    with_member_entropy: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """One attempt of :func:`sliding_window_predict`, with ``settings`` resolved for their device."""
    blend = TileBlend.start(image, settings, attempt.results_device, with_member_entropy)
    combos = mirror_combinations(settings.tta_axes)
    device = settings.device
    threads = min(settings.compute.member_threads if device.type == "cpu" else 1, len(networks) * len(combos))
    autocast = torch.autocast(device.type) if settings.amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast, member_threads_context(threads) as pool:
        for boxes in blend.batches(attempt.tile_batch):
            values, member_entropy = predict_tiles(
                networks, blend.tiles(boxes, device), combos, settings.nonlin, attempt.batch_mirrors,
                with_member_entropy, pool, settings.average == "logits",
            )
            blend.add(boxes, values, member_entropy)
        blend.normalise()  # in-place updates of inference tensors must stay in inference mode
    return blend.result()


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
