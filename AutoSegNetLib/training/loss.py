"""Losses: soft Dice + cross-entropy (softmax classes) or + binary cross-entropy (sigmoid regions), wrapped
for deep supervision, and the confusion counts behind the validation pseudo-Dice.

Shapes: logits ``(B, K, *S)``; label targets ``(B, 1, *S)`` integer; region targets ``(B, R, *S)`` binary
(plus a last channel marking ignored voxels when the dataset has an ``ignore`` label).
The soft Dice follows nnU-Net's memory-efficient variant: background excluded for classes, smoothing 1e-5,
and with ``batch_dice`` the sums run over the whole batch (gathered across DDP ranks with gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from torch import nn


class _AllGatherWithGrad(torch.autograd.Function):
    """Stack a tensor from every rank ``(W, *shape)``; gradients flow back to each rank's own slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ctx.rank = dist.get_rank()
        gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.stack(gathered)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank]


def gather_sum(tensor: torch.Tensor, distributed: bool) -> torch.Tensor:
    """Sum over the batch axis (and over DDP ranks when ``distributed``), keeping gradients."""
    if distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = _AllGatherWithGrad.apply(tensor).sum(0)
    return tensor.sum(0)


class SoftDiceLoss(nn.Module):
    """Negative mean soft Dice over classes (nnU-Net's ``MemoryEfficientSoftDiceLoss``)."""

    def __init__(self, batch_dice: bool, do_bg: bool, use_sigmoid: bool = False, smooth: float = 1e-5,
                 distributed: bool = False) -> None:
        super().__init__()
        self.batch_dice = batch_dice
        self.do_bg = do_bg
        self.use_sigmoid = use_sigmoid
        self.smooth = smooth
        self.distributed = distributed

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        probs = torch.sigmoid(logits) if self.use_sigmoid else torch.softmax(logits, 1)
        axes = tuple(range(2, logits.ndim))
        with torch.no_grad():
            if self.use_sigmoid:
                onehot = target.to(probs.dtype)
            else:
                onehot = torch.zeros_like(probs, dtype=torch.bool).scatter_(1, target.long(), True)
            if not self.do_bg:
                onehot = onehot[:, 1:]
            sum_gt = (onehot if mask is None else onehot * mask).sum(axes)
        if not self.do_bg:
            probs = probs[:, 1:]
        if mask is not None:
            probs = probs * mask
        intersect = (probs * onehot).sum(axes)
        sum_pred = probs.sum(axes)
        if self.batch_dice:
            intersect = gather_sum(intersect, self.distributed)
            sum_pred = gather_sum(sum_pred, self.distributed)
            sum_gt = gather_sum(sum_gt, self.distributed)
        dice = (2 * intersect + self.smooth) / torch.clip(sum_gt + sum_pred + self.smooth, 1e-8)
        return -dice.mean()


class DiceCELoss(nn.Module):
    """Soft Dice (without background) + cross-entropy for softmax outputs; ``ignore_label`` voxels excluded."""

    def __init__(self, batch_dice: bool, ignore_label: int | None = None, distributed: bool = False) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice, do_bg=False, distributed=distributed)
        self.ignore_label = ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.ignore_label is None:
            return self.dice(logits, target) + nnf.cross_entropy(logits, target[:, 0].long())
        mask = target != self.ignore_label
        dice = self.dice(logits, torch.where(mask, target, 0), mask)
        if not mask.any():
            return dice
        return dice + nnf.cross_entropy(logits, target[:, 0].long(), ignore_index=self.ignore_label)


class DiceBCELoss(nn.Module):
    """Soft Dice (all regions) + binary cross-entropy for sigmoid region outputs.

    With ``use_ignore`` the target's last channel marks ignored voxels (excluded from both terms).
    """

    def __init__(self, batch_dice: bool, use_ignore: bool = False, distributed: bool = False) -> None:
        super().__init__()
        self.dice = SoftDiceLoss(batch_dice, do_bg=True, use_sigmoid=True, distributed=distributed)
        self.use_ignore = use_ignore

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.use_ignore:
            target = target.to(logits.dtype)
            return self.dice(logits, target) + nnf.binary_cross_entropy_with_logits(logits, target)
        mask = (1 - target[:, -1:]).to(logits.dtype)
        regions = target[:, :-1].to(logits.dtype)
        bce = nnf.binary_cross_entropy_with_logits(logits, regions, reduction="none")
        bce = (bce * mask).sum() / torch.clip(mask.sum(), min=1e-8)
        return self.dice(logits, regions, mask) + bce


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """``1 / 2**i`` per output (highest resolution first), the lowest resolution 0, normalised to sum 1."""
    weights = [1 / 2**i for i in range(n_outputs)]
    if n_outputs > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of ``loss`` over outputs and targets (highest resolution first).

    Zero-weight outputs are skipped, except with ``keep_zero_weights`` (DDP), where they contribute
    ``0 * loss`` so that every parameter takes part in the backward pass.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float], keep_zero_weights: bool = False) -> None:
        super().__init__()
        self.loss = loss
        self.weights = [float(w) for w in weights]
        self.keep_zero_weights = keep_zero_weights

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        total = None
        for weight, output, target in zip(self.weights, outputs, targets):
            if weight == 0.0 and not self.keep_zero_weights:
                continue
            term = weight * self.loss(output, target)
            total = term if total is None else total + term
        return total


def build_loss(n_outputs: int, batch_dice: bool, regions: bool, ignore_label: int | None,
               distributed: bool = False) -> DeepSupervisionLoss:
    """nnU-Net's loss for a label setup: Dice+CE (classes) or Dice+BCE (regions), deep-supervision weighted."""
    if regions:
        base: nn.Module = DiceBCELoss(batch_dice, use_ignore=ignore_label is not None, distributed=distributed)
    else:
        base = DiceCELoss(batch_dice, ignore_label, distributed=distributed)
    return DeepSupervisionLoss(base, deep_supervision_weights(n_outputs), keep_zero_weights=distributed)


@torch.no_grad()
def confusion_counts(logits: torch.Tensor, target: torch.Tensor, regions: bool, ignore_label: int | None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """True positives, false positives, false negatives per foreground class or region, summed over the batch
    and all voxels (``(K_fg,)`` float32, exact up to 2**24 voxels per batch; accumulate epochs in float64); the
    pseudo-Dice of validation is ``2tp / (2tp + fp + fn)``."""
    axes = [0, *range(2, logits.ndim)]
    mask = None
    if regions:
        if ignore_label is not None:
            mask, target = (1 - target[:, -1:]).float(), target[:, :-1]
        prediction, truth = (logits > 0).float(), target.float()
    else:
        if ignore_label is not None:
            mask = (target != ignore_label).float()
            target = torch.where(target == ignore_label, 0, target)
        prediction = torch.zeros_like(logits, dtype=torch.float32).scatter_(1, logits.argmax(1, keepdim=True), 1)
        truth = torch.zeros_like(logits, dtype=torch.float32).scatter_(1, target.long(), 1)
    if mask is not None:
        prediction, truth = prediction * mask, truth * mask
    tp = (prediction * truth).sum(axes)
    fp = (prediction * (1 - truth)).sum(axes)
    fn = ((1 - prediction) * truth).sum(axes)
    if not regions:
        tp, fp, fn = tp[1:], fp[1:], fn[1:]
    return tp, fp, fn
