"""Sliding-window prediction of a whole image: padding, Gaussian-weighted tiles, batched tiles, mirroring TTA.

:func:`sliding_window_predict` is the pure entry point (image tensor in, ``(K, Z, Y, X)`` tensor out); the
:class:`~AutoSegNetLib.inference.predictor.Predictor` configures it from a model folder.

Members and averaging: each network (fold) is run on every mirrored variant of a tile; these are the ensemble
*members*. Their outputs are averaged in the space ``average`` names: ``"probabilities"`` (the default, after
softmax/sigmoid) or ``"logits"`` (nnU-Net's mirroring, fold and tile averaging, with the softmax/sigmoid applied
once to the blended average; without ``nonlin`` logits are all there is). Overlapping tiles are blended with
a Gaussian importance map. The accumulator is one float32 ``(K, Z, Y, X)`` array plus one ``(Z, Y, X)``
weight map, however many folds and mirrored variants are averaged.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.cpu_speed import MEMORY_FORMAT_ATTRIBUTE
from AutoSegNetLib.inference.tiles import compute_steps, gaussian_importance_map, mirror_combinations, padding_for
from AutoSegNetLib.inference.uncertainty import normalised_entropy

log = logging.getLogger(__name__)

#: ``torch.OutOfMemoryError`` (torch >= 2.5) or its CUDA-only predecessor.
OutOfMemoryError: type[Exception] = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

NONLINS = (None, "softmax", "sigmoid")
AVERAGES = ("probabilities", "logits")


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
    patch_size: Sequence[int],
    step: float = 0.5,
    mirror_axes: Sequence[int] | None = None,
    tile_batch: int = 1,
    device: torch.device | str | None = None,
    nonlin: str | None = None,
    *,
    batch_mirrors: bool = True,
    results_device: torch.device | str | None = None,
    with_member_entropy: bool = False,
    amp: bool | None = None,
    member_threads: int = 1,
    average: str = "probabilities",
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Predict a whole image ``(C, Z, Y, X)`` tile by tile; returns ``(K, Z, Y, X)`` float32 on ``results_device``.

    - ``network``: one network or several (fold ensemble), in eval mode and already on ``device``.
    - ``patch_size``: 3 entries for a 3D network; 2 entries ``(Y, X)`` for a 2D network, which then predicts
      the image slice by slice along ``Z``.
    - ``step``: tile step as a fraction of the patch (nnU-Net: 0.5). Images smaller than the patch are padded
      with zeros (centred) and the padding is cut off again.
    - ``mirror_axes``: the network's spatial axes to mirror for test-time augmentation (every combination,
      ``2 ** len(mirror_axes)`` passes per network); ``None`` or empty for no TTA.
    - ``tile_batch``: tiles per forward pass; with ``batch_mirrors`` the mirrored variants of those tiles go
      through the network in the same pass (``tile_batch * 2 ** len(mirror_axes)`` samples).
    - ``nonlin``: ``None`` for averaged logits, ``"softmax"`` or ``"sigmoid"`` (regions) for probabilities.
    - ``with_member_entropy``: also return the blended mean of the members' normalised entropies ``(Z, Y, X)``
      (needs ``nonlin``), for the disagreement map of :mod:`AutoSegNetLib.inference.uncertainty`.
    - ``amp``: autocast the forward passes (default: on for CUDA, as nnU-Net); accumulation stays float32.
    - ``member_threads``: on the CPU, run this many members (folds x mirrored variants) at once, each in its own
      thread with one intra-op thread (see :func:`threaded_member_outputs`); 1 runs them one after the other.
    - ``average``: ``"probabilities"`` averages the members' and tiles' softmax/sigmoid outputs; ``"logits"``
      averages their logits and applies ``nonlin`` once at the end, exactly as nnU-Net (docs/decisions/0009).
      The two give the same label map except at near-ties.

    A single tile covering the whole (padded) image is copied without weighting, so an image no larger than the
    patch gives exactly the (padded, cropped) output of one forward pass. On a CUDA out-of-memory error the
    prediction is retried following :func:`fallback_plan`, with a log line each time.
    """
    networks = [network] if isinstance(network, nn.Module) else list(network)
    if not networks:
        raise ValueError("sliding_window_predict needs at least one network.")
    if nonlin not in NONLINS:
        raise ValueError(f"nonlin must be one of {NONLINS}, got {nonlin!r}.")
    if with_member_entropy and nonlin is None:
        raise ValueError("with_member_entropy needs probabilities: pass nonlin='softmax' or 'sigmoid'.")
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}.")
    if image.ndim != 4:
        raise ValueError(f"image must be (C, Z, Y, X), got shape {tuple(image.shape)}.")
    if len(patch_size) not in (2, 3):
        raise ValueError(f"patch_size must have 2 (slice by slice) or 3 entries, got {list(patch_size)}.")
    device = torch.device(device) if device is not None else next(networks[0].parameters()).device
    results_device = torch.device(results_device) if results_device is not None else device
    amp = device.type == "cuda" if amp is None else amp
    plan = fallback_plan(results_device, max(1, int(tile_batch)), batch_mirrors)
    for index, attempt in enumerate(plan):
        try:
            result = _predict_windows(
                networks, image, patch_size, step, mirror_axes or (), device, nonlin, attempt, with_member_entropy, amp,
                member_threads if device.type == "cpu" else 1, average == "logits",
            )  # fmt: skip
            if average == "logits" and nonlin is not None:
                apply_nonlin_(result[0] if isinstance(result, tuple) else result, nonlin)
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


def _predict_windows(
    networks: list[nn.Module],
    image: torch.Tensor,
    patch_size: Sequence[int],
    step: float,
    mirror_axes: Sequence[int],
    device: torch.device,
    nonlin: str | None,
    attempt: WindowAttempt,
    with_member_entropy: bool,
    amp: bool,
    member_threads: int,
    average_logits: bool,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    slice_mode = len(patch_size) == 2
    window = (1, *patch_size) if slice_mode else tuple(int(p) for p in patch_size)
    pads = padding_for(image.shape[1:], window)
    data = _pad(image.to(attempt.results_device, torch.float32), pads)
    padded_size = tuple(data.shape[1:])
    starts = window_starts(padded_size, window, step, slice_mode)
    single = len(starts) == 1
    weights = torch.from_numpy(gaussian_importance_map(window)).to(attempt.results_device)
    accumulator: torch.Tensor | None = None
    zeros = functools.partial(torch.zeros, padded_size, dtype=torch.float32, device=attempt.results_device)
    entropy_sum = zeros() if with_member_entropy else None
    weight_sum = None if single else zeros()
    combos = mirror_combinations(mirror_axes)
    autocast = torch.autocast(device.type) if amp else contextlib.nullcontext()
    members = len(networks) * len(combos)
    with torch.inference_mode(), autocast, member_threads_context(min(member_threads, members)) as pool:
        for first in range(0, len(starts), attempt.tile_batch):
            boxes = [_box(start, window) for start in starts[first : first + attempt.tile_batch]]
            tiles = torch.stack([data[(slice(None), *box)] for box in boxes]).to(device, non_blocking=True)
            if slice_mode:
                tiles = tiles[:, :, 0]
            values, member_entropy = predict_tiles(
                networks, tiles, combos, nonlin, attempt.batch_mirrors, with_member_entropy, pool, average_logits
            )
            if slice_mode:
                values = values.unsqueeze(2)
                member_entropy = member_entropy.unsqueeze(1) if member_entropy is not None else None
            values = values.to(attempt.results_device, torch.float32)
            if accumulator is None:
                accumulator = torch.zeros((values.shape[1], *padded_size), dtype=torch.float32, device=values.device)
            for b, box in enumerate(boxes):
                _blend(accumulator, weight_sum, values[b], box, weights, single)
                if entropy_sum is not None:
                    _blend(entropy_sum, None, member_entropy[b].to(entropy_sum.device, torch.float32), box,
                           weights, single)  # fmt: skip
        if weight_sum is not None:  # in-place updates of inference tensors must stay in inference mode
            accumulator /= weight_sum
            if entropy_sum is not None:
                entropy_sum /= weight_sum
    crop = tuple(slice(before, size - after) for (before, after), size in zip(pads, padded_size))
    result = accumulator[(slice(None), *crop)]
    if entropy_sum is not None:
        return result, entropy_sum[crop]
    return result


def window_starts(
    padded_size: Sequence[int], window: Sequence[int], step: float, slice_mode: bool
) -> list[tuple[int, ...]]:
    """Start corners of all tiles, first axis outermost; in ``slice_mode`` every slice along the first axis."""
    if slice_mode:
        in_plane = compute_steps(padded_size[1:], window[1:], step)
        steps = [list(range(padded_size[0])), *in_plane]
    else:
        steps = compute_steps(padded_size, window, step)
    starts: list[tuple[int, ...]] = [()]
    for axis_steps in steps:
        starts = [(*s, t) for s in starts for t in axis_steps]
    return starts


def predict_tiles(
    networks: Sequence[nn.Module],
    tiles: torch.Tensor,
    combos: Sequence[tuple[int, ...]],
    nonlin: str | None,
    batch_mirrors: bool,
    with_member_entropy: bool = False,
    pool: MemberPool | None = None,
    average_logits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Average of all members (networks x mirrored variants) for a batch of tiles ``(B, C, *S)``.

    Returns ``(B, K, *S)`` float32 (probabilities after ``nonlin``; logits when ``nonlin`` is None or with
    ``average_logits``) and, if asked, the members' mean normalised entropy ``(B, *S)`` (of each member's
    probabilities). Members are summed in a fixed order (network, then ``combos``) however they
    are computed: mirrored variants in one forward pass (``batch_mirrors``) and/or spread over the threads of
    ``pool`` (CPU, see :func:`member_threads_context`).
    """
    total: torch.Tensor | None = None
    entropy_total: torch.Tensor | None = None
    members = [(network, combo) for network in networks for combo in combos]
    if pool is not None and len(members) > 1:
        outputs: Iterable[torch.Tensor] = threaded_member_outputs(members, tiles, batch_mirrors, pool)
    else:
        outputs = (out for network in networks for out in mirrored_outputs(network, tiles, combos, batch_mirrors))
    for output in outputs:
        logits = output.float()
        needs_probabilities = nonlin is not None and (with_member_entropy or not average_logits)
        probabilities = _nonlin(logits, nonlin) if needs_probabilities else None
        if with_member_entropy:
            entropy = normalised_entropy(probabilities, regions=nonlin == "sigmoid", channel_dim=1)
            entropy_total = entropy if entropy_total is None else entropy_total.add_(entropy)
        output = logits if average_logits or probabilities is None else probabilities
        total = output.clone() if total is None else total.add_(output)
    total /= len(members)
    if entropy_total is not None:
        entropy_total /= len(members)
    return total, entropy_total


def _nonlin(logits: torch.Tensor, nonlin: str) -> torch.Tensor:
    """Softmax over the class axis (1) of ``(B, K, *S)`` logits, or the element-wise sigmoid (regions)."""
    return torch.softmax(logits, 1) if nonlin == "softmax" else torch.sigmoid(logits)


def apply_nonlin_(logits: torch.Tensor, nonlin: str) -> torch.Tensor:
    """Turn averaged logits ``(K, Z, Y, X)`` into probabilities in place (no second full-size array): softmax
    over ``K`` (max subtracted first, so no overflow) or the sigmoid of each region. Returns ``logits``."""
    with torch.inference_mode(logits.is_inference()):
        if nonlin == "sigmoid":
            return logits.sigmoid_()
        logits.sub_(logits.amax(0, keepdim=True)).exp_()
        return logits.div_(logits.sum(0, keepdim=True))


def mirrored_outputs(
    network: nn.Module, tiles: torch.Tensor, combos: Sequence[tuple[int, ...]], batch_mirrors: bool
) -> Iterator[torch.Tensor]:
    """The network's output for each mirrored variant of ``tiles`` ``(B, C, *S)``, flipped back, in ``combos``
    order (spatial axis indices; ``()`` is the unflipped input). With ``batch_mirrors`` all variants share one
    forward pass of ``B * len(combos)`` samples."""
    if batch_mirrors and len(combos) > 1:
        batch = tiles.shape[0]
        stacked = torch.cat([_flip(tiles, combo) for combo in combos])
        outputs = _forward(network, stacked)
        for i, combo in enumerate(combos):
            yield _flip(outputs[i * batch : (i + 1) * batch], combo)
        return
    for combo in combos:
        yield _flip(_forward(network, _flip(tiles, combo)), combo)


def threaded_member_outputs(
    members: Sequence[tuple[nn.Module, tuple[int, ...]]], tiles: torch.Tensor, batch_mirrors: bool, pool: MemberPool
) -> list[torch.Tensor]:
    """Member outputs (in member order) computed by the threads of ``pool`` side by side.

    On a CPU with few cores this keeps every core busy with its own forward passes instead of splitting each
    operation between cores (no synchronisation per operation); see :func:`member_threads_context`. Threads take
    members round-robin; a thread batches the mirrored variants of one network it holds when ``batch_mirrors``.
    """
    threads = pool.threads

    def run(indices: list[int]) -> list[tuple[int, torch.Tensor]]:
        done = []
        with torch.inference_mode():
            for _network, group in itertools.groupby(indices, key=lambda i: id(members[i][0])):
                group = list(group)
                combos = [members[i][1] for i in group]
                done.extend(zip(group, mirrored_outputs(members[group[0]][0], tiles, combos, batch_mirrors)))
        return done

    groups = [list(range(start, len(members), threads)) for start in range(threads)]
    results: dict[int, torch.Tensor] = {}
    for part in pool.executor.map(run, [g for g in groups if g]):
        results.update(part)
    return [results[i] for i in range(len(members))]


@dataclass(frozen=True)
class MemberPool:
    """Threads that compute ensemble members side by side."""

    executor: ThreadPoolExecutor
    threads: int


@contextlib.contextmanager
def member_threads_context(threads: int) -> Iterator[MemberPool | None]:
    """A pool of ``threads`` threads for :func:`threaded_member_outputs`, with PyTorch's intra-op threads divided
    between them for the duration (set once: changing the thread count clears oneDNN's kernel cache)."""
    if threads <= 1:
        yield None
        return
    previous = torch.get_num_threads()
    per_thread = max(1, previous // threads)
    torch.set_num_threads(per_thread)
    try:
        # every new thread starts with OpenMP's default thread count: set it there too, or each pass would still
        # spread over all cores (oversubscribing them) and round differently
        with ThreadPoolExecutor(threads, "autosegnet-member", torch.set_num_threads, (per_thread,)) as executor:
            yield MemberPool(executor, threads)
    finally:
        torch.set_num_threads(previous)


def _forward(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    memory_format = getattr(network, MEMORY_FORMAT_ATTRIBUTE, None)  # set by cpu_speed.prepare_for_cpu
    output = network(x.contiguous(memory_format=memory_format) if memory_format is not None else x)
    return output[0] if isinstance(output, (list, tuple)) else output  # deep supervision left on: full resolution


def _flip(x: torch.Tensor, spatial_axes: tuple[int, ...]) -> torch.Tensor:
    return torch.flip(x, [a + 2 for a in spatial_axes]) if spatial_axes else x


def _box(start: Sequence[int], window: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + w) for s, w in zip(start, window))


def _blend(
    accumulator: torch.Tensor,
    weight_sum: torch.Tensor | None,
    values: torch.Tensor,
    box: tuple[slice, ...],
    weights: torch.Tensor,
    single: bool,
) -> None:
    """Add ``values`` (``(K, *W)`` or ``(*W)``) weighted by ``weights`` into ``accumulator[..., box]``; a single
    tile is copied unweighted."""
    index = box if values.ndim == len(box) else (slice(None), *box)
    if single:
        accumulator[index] = values
        return
    accumulator[index] += values * weights
    if weight_sum is not None:
        weight_sum[box] += weights


def _pad(image: torch.Tensor, pads: Sequence[tuple[int, int]]) -> torch.Tensor:
    if not any(before or after for before, after in pads):
        return image
    flat = [amount for before_after in reversed(pads) for amount in before_after]
    return torch.nn.functional.pad(image, flat, mode="constant", value=0.0)


def _release_cached_memory(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
