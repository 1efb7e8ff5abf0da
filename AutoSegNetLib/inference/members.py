"""The ensemble members of a batch of tiles: each network (fold) on each mirrored variant, averaged.

:func:`predict_tiles` sums the members in a fixed order (network, then mirrored variant) however they are computed:
mirrored variants in one forward pass or one by one (:func:`mirrored_outputs`), members one after the other or side
by side on CPU threads (:func:`threaded_member_outputs` in a :func:`member_threads_context`).
:func:`apply_nonlin_` turns averaged logits into probabilities in place. Used by
:func:`~AutoSegNetLib.inference.sliding_window.sliding_window_predict`.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch
from torch import nn

from AutoSegNetLib.inference.cpu_speed import MEMORY_FORMAT_ATTRIBUTE
from AutoSegNetLib.inference.uncertainty import normalised_entropy


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

