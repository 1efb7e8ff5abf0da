"""Losses: Dice+CE and Dice+BCE against hand computations, ignore label, deep-supervision weights, counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from AutoSegNetLib.training.loss import (
    DeepSupervisionLoss,
    DiceBCELoss,
    DiceCELoss,
    SoftDiceLoss,
    build_loss,
    confusion_counts,
    deep_supervision_weights,
)


def test_deep_supervision_weights_halve_per_output_and_ignore_the_lowest():
    weights = deep_supervision_weights(5)
    assert weights == pytest.approx(np.array([1, 0.5, 0.25, 0.125, 0]) / 1.875)
    assert deep_supervision_weights(1) == [1.0]


@pytest.mark.parametrize("batch_dice", [True, False])
def test_soft_dice_equals_a_numpy_reference(batch_dice):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=gen)
    target = torch.randint(0, 3, (2, 1, 4, 5), generator=gen)
    probs = torch.softmax(logits, 1).numpy()[:, 1:]
    onehot = np.stack([(target[:, 0] == k).numpy() for k in (1, 2)], 1).astype(float)
    axes = (0, 2, 3) if batch_dice else (2, 3)
    inter, pred, gt = (probs * onehot).sum(axes), probs.sum(axes), onehot.sum(axes)
    expected = -np.mean((2 * inter + 1e-5) / (gt + pred + 1e-5))
    got = SoftDiceLoss(batch_dice=batch_dice, do_bg=False)(logits, target)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_dice_ce_is_dice_plus_cross_entropy_and_near_minus_one_when_perfect():
    target = torch.tensor([[[[0, 1], [2, 2]]]])
    logits = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float() * 50
    loss = DiceCELoss(batch_dice=True)(logits, target)
    assert float(loss) == pytest.approx(-1.0, abs=1e-4)


@pytest.mark.parametrize("regions", [False, True])
def test_ignored_voxels_do_not_change_the_loss(regions):
    gen = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 3, (2, 1, 6, 6), generator=gen)
    labels[:, :, :2] = 3  # ignore label
    logits = torch.randn(2, 2 if regions else 3, 6, 6, generator=gen)
    if regions:
        target = torch.cat([(labels >= 1) & (labels < 3), labels == 2, labels == 3], 1).to(torch.uint8)
        loss_fn = DiceBCELoss(batch_dice=True, use_ignore=True)
    else:
        target, loss_fn = labels, DiceCELoss(batch_dice=True, ignore_label=3)
    changed = logits.clone()
    changed[:, :, :2] = torch.randn(changed[:, :, :2].shape, generator=gen) * 10
    assert float(loss_fn(logits, target)) == pytest.approx(float(loss_fn(changed, target)), rel=1e-6)


def test_deep_supervision_skips_zero_weights_unless_ddp_needs_every_parameter():
    calls = []

    class Probe(torch.nn.Module):
        def forward(self, output, target):
            calls.append(output.shape[-1])
            return output.sum() * 0 + 1.0

    outputs = [torch.zeros(1, 2, 8), torch.zeros(1, 2, 4), torch.zeros(1, 2, 2)]
    assert float(DeepSupervisionLoss(Probe(), deep_supervision_weights(3))(outputs, [None] * 3)) == pytest.approx(1.0)
    assert calls == [8, 4]
    DeepSupervisionLoss(Probe(), deep_supervision_weights(3), keep_zero_weights=True)(outputs, [None] * 3)
    assert calls[2:] == [8, 4, 2]


def test_build_loss_picks_bce_for_regions():
    assert isinstance(build_loss(3, True, regions=True, ignore_label=None).loss, DiceBCELoss)
    assert isinstance(build_loss(3, False, regions=False, ignore_label=4).loss, DiceCELoss)


def test_confusion_counts_are_exact_and_skip_background():
    target = torch.tensor([[[0, 1, 1, 2, 2, 3]]])
    predicted = torch.tensor([[0, 1, 2, 2, 0, 1]])
    logits = torch.nn.functional.one_hot(predicted, 3).permute(0, 2, 1).float()
    tp, fp, fn = confusion_counts(logits, target, regions=False, ignore_label=3)
    assert tp.tolist() == [1, 1] and fp.tolist() == [0, 1] and fn.tolist() == [1, 1]
    region_logits = torch.tensor([[[5.0, -5.0, 5.0]]])
    region_target = torch.tensor([[[1, 1, 0], [0, 0, 1]]], dtype=torch.uint8)  # last channel: ignored voxel
    tp, fp, fn = confusion_counts(region_logits, region_target, regions=True, ignore_label=9)
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([1], [0], [1])
