"""Tile positions, the Gaussian importance map and sliding-window prediction, against straightforward references."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math

import numpy as np
import pytest
import torch
from _helpers_inference import tiny_spec
from scipy.ndimage import gaussian_filter
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.inference.blend import tile_weights
from AutoSegNetLib.inference.sliding_window import (
    OutOfMemoryError,
    SlidingWindowInferer,
    SlidingWindowSettings,
    WindowAttempt,
    fallback_plan,
    sliding_window_predict,
)
from AutoSegNetLib.inference.tiles import compute_steps, gaussian_importance_map, mirror_combinations, padding_for
from AutoSegNetLib.inference.uncertainty import disagreement, normalised_entropy
from AutoSegNetLib.network import build_network

torch.set_num_threads(2)


# ----- references ------------------------------------------------------------------------------------
def reference_steps(image: int, patch: int, step: float) -> list[int]:
    """nnU-Net's rule written with np.linspace: n tiles evenly spread from 0 to image - patch."""
    n = int(np.ceil((image - patch) / (patch * step))) + 1
    return [int(v) for v in np.round(np.linspace(0, image - patch, n))]


def reference_gaussian(patch: tuple[int, ...]) -> np.ndarray:
    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    smooth = gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0)
    smooth = smooth / smooth.max() * 10
    smooth[smooth == 0] = smooth[smooth != 0].min()
    return smooth


class Identity(nn.Module):
    """A 'network' returning its input: sliding-window blending must give the input back everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class RampAdder(nn.Module):
    """Adds a ramp along the first spatial axis: mirroring that axis averages the ramp to its mean."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(x.shape[2], dtype=x.dtype).reshape(1, 1, -1, *([1] * (x.ndim - 3)))
        return x + ramp


class FailsOnBigBatches(nn.Module):
    """Raises the out-of-memory error for batches larger than ``limit``, else acts like ``inner``."""

    def __init__(self, inner: nn.Module, limit: int) -> None:
        super().__init__()
        self.inner, self.limit, self.calls = inner, limit, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise OutOfMemoryError("simulated: CUDA out of memory")
        return self.inner(x)


def a_conv_net(ndim: int, channels: int = 2, classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_network(tiny_spec(ndim), channels, classes, deep_supervision=False).eval()


# ----- tile positions --------------------------------------------------------------------------------
@pytest.mark.parametrize("image, patch, step", [
    (10, 8, 0.5), (100, 40, 0.5), (57, 20, 0.5), (64, 64, 0.5), (130, 48, 0.25), (33, 7, 1.0), (9, 1, 0.5),
])
def test_tile_starts_follow_nnunets_rule(image: int, patch: int, step: float) -> None:
    assert compute_steps([image], [patch], step) == [reference_steps(image, patch, step)]


def test_tile_starts_for_known_sizes() -> None:
    assert compute_steps([100, 40, 10], [40, 40, 8], 0.5) == [[0, 20, 40, 60], [0], [0, 2]]


@pytest.mark.parametrize("seed", range(5))
def test_every_voxel_is_covered_and_tiles_stay_inside(seed: int) -> None:
    rng = np.random.default_rng(seed)
    patch = rng.integers(1, 12, 3)
    image = patch + rng.integers(0, 30, 3)
    step = float(rng.choice([0.25, 0.5, 0.7, 1.0]))
    coverage = np.zeros(image, int)
    steps = compute_steps(image.tolist(), patch.tolist(), step)
    for start in itertools.product(*steps):
        box = tuple(slice(s, s + p) for s, p in zip(start, patch))
        assert all(s + p <= i for s, p, i in zip(start, patch, image))
        coverage[box] += 1
    assert coverage.min() >= 1


def test_step_one_tiles_a_divisible_image_exactly_once() -> None:
    steps = compute_steps([24, 16], [8, 8], 1.0)
    assert steps == [[0, 8, 16], [0, 8]]


def test_an_image_smaller_than_the_patch_is_refused_by_compute_steps() -> None:
    with pytest.raises(ValueError, match="pad first"):
        compute_steps([6, 8], [8, 8], 0.5)


def test_padding_centres_the_image_in_the_patch() -> None:
    assert padding_for([36, 50, 35], [40, 56, 40]) == [(2, 2), (3, 3), (2, 3)]
    assert padding_for([50, 60], [40, 56]) == [(0, 0), (0, 0)]


def test_mirror_combinations_are_all_subsets_identity_first() -> None:
    assert mirror_combinations([0, 1, 2]) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
    assert mirror_combinations([]) == [()]


# ----- Gaussian importance map ----------------------------------------------------------------------
@pytest.mark.parametrize("patch", [(40, 56, 40), (7, 5), (1, 64, 64), (16, 16, 16), (3,), (9, 12, 6)])
def test_gaussian_map_equals_smoothing_an_impulse_with_scipy(patch: tuple[int, ...]) -> None:
    weights = gaussian_importance_map(patch)
    assert weights.dtype == np.float32 and weights.shape == patch
    np.testing.assert_allclose(weights, reference_gaussian(patch), rtol=1e-5)
    assert weights.max() == pytest.approx(10.0) and weights.min() > 0
    assert weights[tuple(p // 2 for p in patch)] == weights.max()


# ----- sliding window ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ndim, spatial, patch", [
    (3, (6, 7, 5), (8, 8, 8)),         # padded on every axis
    (3, (8, 8, 8), (8, 8, 8)),         # exactly one patch
    (2, (1, 5, 8), (8, 8)),            # a 2D image with a 2D network
])
def test_an_image_no_larger_than_the_patch_equals_one_forward_pass_of_the_padded_image(ndim, spatial, patch) -> None:
    net = a_conv_net(ndim)
    image = torch.randn(2, *spatial)
    result = sliding_window_predict(net, image, patch_size=patch, mirror_axes=None, device="cpu")
    window = (1, *patch) if ndim == 2 else patch
    pads = padding_for(spatial, window)
    padded = torch.nn.functional.pad(image, [a for p in reversed(pads) for a in p])
    net_input = padded[None] if ndim == 3 else padded[:, 0][None]
    with torch.no_grad():
        expected = net(net_input)[0]
    expected = expected if ndim == 3 else expected[:, None]
    crop = tuple(slice(b, s - a) for (b, a), s in zip(pads, padded.shape[1:]))
    assert torch.equal(result, expected[(slice(None), *crop)])


@pytest.mark.parametrize("spatial, patch, step, tile_batch, channels", [
    ((20, 19, 17), (8, 8, 8), 0.5, 1, 1),      # 3D, many tiles
    ((5, 30, 21), (3, 8, 8), 0.5, 4, 2),       # anisotropic patch, batched tiles, two channels
    ((6, 17, 23), (8, 8), 0.5, 3, 1),          # 2D network slice by slice
    ((9, 12, 10), (8, 8, 8), 0.3, 2, 3),       # small step
])
def test_blended_tiles_of_an_identity_network_give_the_image_back(spatial, patch, step, tile_batch, channels) -> None:
    image = torch.randn(channels, *spatial)
    result = sliding_window_predict(Identity(), image, patch_size=patch, step=step, mirror_axes=None,
                                    tile_batch=tile_batch, device="cpu")
    assert result.shape == image.shape and result.dtype == torch.float32
    torch.testing.assert_close(result, image, rtol=1e-5, atol=1e-5)


def test_mirroring_averages_the_flipped_passes() -> None:
    image = torch.zeros(1, 6, 4, 4)
    result = sliding_window_predict(RampAdder(), image, patch_size=(6, 4, 4), mirror_axes=[0], device="cpu")
    # ramp 0..5 and its mirror 5..0 average to 2.5 everywhere
    torch.testing.assert_close(result, torch.full_like(image, 2.5))
    without = sliding_window_predict(RampAdder(), image, patch_size=(6, 4, 4), mirror_axes=None, device="cpu")
    torch.testing.assert_close(without[0, :, 0, 0], torch.arange(6, dtype=torch.float32))



def test_uniform_blending_of_an_identity_network_also_gives_the_image_back() -> None:
    image = torch.randn(1, 13, 11, 12)
    settings = SlidingWindowSettings((8, 8, 8), gaussian=False, device="cpu")
    torch.testing.assert_close(SlidingWindowInferer(settings)(Identity(), image), image, rtol=1e-5, atol=1e-5)
    assert torch.equal(tile_weights((2, 3), gaussian=False), torch.ones(2, 3))


def test_settings_are_frozen_and_resolve_the_automatic_choices_for_their_device() -> None:
    settings = SlidingWindowSettings([8, 8], mirror_axes=[1, 0], device="cpu")
    assert settings.patch_size == (8, 8) and settings.mirror_axes == (1, 0) and settings.window == (1, 8, 8)
    assert settings.compute.batch_mirrors is False and settings.compute.member_threads >= 1
    assert settings.tta_axes == (1, 0) and dataclasses.replace(settings, tta=False).tta_axes == ()
    assert SlidingWindowSettings((8, 8, 8)).compute.batch_mirrors is None  # no device yet: resolved when it runs
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.step = 0.25  # type: ignore[misc]
    with pytest.raises(AutoSegNetError, match="tile step must be in"):
        SlidingWindowSettings((8, 8, 8), step=0)
    with pytest.raises(ValueError, match="patch_size must have 2"):
        SlidingWindowSettings((8,))

@pytest.mark.parametrize("ndim", [2, 3])
def test_batched_or_threaded_mirrors_give_the_same_result_as_one_pass_per_mirror(ndim: int) -> None:
    net = a_conv_net(ndim)
    image = torch.randn(2, 3 if ndim == 2 else 10, 12, 11)
    patch = (8, 8) if ndim == 2 else (8, 8, 8)
    axes = list(range(ndim))
    settings = SlidingWindowSettings(patch, mirror_axes=axes, nonlin="softmax")
    batched = sliding_window_predict(net, image, settings, tile_batch=2, batch_mirrors=True, member_threads=1)
    looped = sliding_window_predict(net, image, settings, tile_batch=1, batch_mirrors=False, member_threads=1)
    threaded = sliding_window_predict(net, image, settings, tile_batch=2, batch_mirrors=True, member_threads=2)
    for other in (batched, threaded):
        torch.testing.assert_close(other, looped, rtol=1e-5, atol=1e-6)
        assert torch.equal(other.argmax(0), looped.argmax(0))
    assert torch.get_num_threads() == 2  # restored after the member threads


def test_softmax_probabilities_sum_to_one_and_several_networks_average() -> None:
    nets = [a_conv_net(3, seed=s) for s in range(2)]
    image = torch.randn(2, 9, 10, 9)
    settings = SlidingWindowSettings((8, 8, 8), mirror_axes=[0, 1, 2], nonlin="softmax")
    both = sliding_window_predict(nets, image, settings, member_threads=3)
    singles = [SlidingWindowInferer(settings)(n, image) for n in nets]
    torch.testing.assert_close(both.sum(0), torch.ones(image.shape[1:]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both, (singles[0] + singles[1]) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nonlin", ["softmax", "sigmoid"])
def test_logit_averaging_applies_the_nonlinearity_once_to_the_blended_logits(nonlin: str) -> None:
    nets = [a_conv_net(3, seed=s) for s in range(2)]
    image = torch.randn(2, 12, 11, 10)  # several overlapping tiles
    logits = sliding_window_predict(nets, image, patch_size=(8, 8, 8), mirror_axes=[0, 2])
    averaged = sliding_window_predict(nets, image, patch_size=(8, 8, 8), mirror_axes=[0, 2], nonlin=nonlin,
                                      average="logits")
    expected = torch.softmax(logits, 0) if nonlin == "softmax" else torch.sigmoid(logits)
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-6)
    probability_average = sliding_window_predict(nets, image, patch_size=(8, 8, 8), mirror_axes=[0, 2], nonlin=nonlin)
    assert not torch.allclose(averaged, probability_average, atol=1e-4)  # the two averages really differ


def test_logit_averaging_of_one_tile_is_the_softmax_of_the_mean_of_the_flipped_passes() -> None:
    net = a_conv_net(3)
    image = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        passes = [net(image[None]), net(image[None].flip(2)).flip(2)]
    expected = torch.softmax((passes[0] + passes[1])[0] / 2, 0)
    averaged = sliding_window_predict(net, image, patch_size=(8, 8, 8), mirror_axes=[0], nonlin="softmax",
                                      average="logits")
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-6)


def test_logit_averaging_keeps_the_members_entropy_of_their_probabilities() -> None:
    nets = [a_conv_net(3, seed=s) for s in range(2)]
    image = torch.randn(2, 10, 9, 8)
    runs = [sliding_window_predict(nets, image, patch_size=(8, 8, 8), mirror_axes=[1], nonlin="softmax",
                                   average=average, with_member_entropy=True)
            for average in ("probabilities", "logits")]
    torch.testing.assert_close(runs[0][1], runs[1][1])
    torch.testing.assert_close(runs[1][0].sum(0), torch.ones(image.shape[1:]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="average must be one of"):
        sliding_window_predict(nets, image, patch_size=(8, 8, 8), nonlin="softmax", average="votes")


def test_fallback_plan_moves_results_to_the_cpu_then_shrinks_the_batch() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert fallback_plan(gpu, 4, True) == [
        WindowAttempt(gpu, 4, True), WindowAttempt(cpu, 4, True), WindowAttempt(cpu, 2, True),
        WindowAttempt(cpu, 1, True), WindowAttempt(cpu, 1, False),
    ]
    assert fallback_plan(cpu, 1, False) == [WindowAttempt(cpu, 1, False)]


def test_out_of_memory_retries_with_fewer_tiles_and_says_so(caplog) -> None:
    image = torch.randn(1, 12, 12, 12)
    net = FailsOnBigBatches(Identity(), limit=2)
    with caplog.at_level(logging.WARNING):
        result = sliding_window_predict(net, image, patch_size=(8, 8, 8), mirror_axes=[0], tile_batch=4, device="cpu",
                                        batch_mirrors=True, member_threads=1)
    torch.testing.assert_close(result, image, rtol=1e-5, atol=1e-5)
    assert "Out of memory" in caplog.text and "1 tile(s) at once" in caplog.text
    assert max(net.calls[-3:]) <= 2


def test_out_of_memory_with_a_single_tile_is_a_clear_error() -> None:
    with pytest.raises(AutoSegNetError, match="--device cpu"):
        sliding_window_predict(FailsOnBigBatches(Identity(), limit=0), torch.randn(1, 8, 8, 8), patch_size=(8, 8, 8))


def test_member_entropy_is_zero_disagreement_for_identical_members() -> None:
    net = a_conv_net(3)
    image = torch.randn(2, 8, 7, 8)  # one tile: overlapping tiles that disagree would count as disagreement
    probabilities, member_entropy = sliding_window_predict([net, net], image, patch_size=(8, 8, 8), mirror_axes=None,
                                                           nonlin="softmax", with_member_entropy=True)
    entropy = normalised_entropy(probabilities, regions=False)
    torch.testing.assert_close(member_entropy, entropy, rtol=1e-4, atol=1e-5)
    assert disagreement(entropy, member_entropy).max() < 1e-4


def test_normalised_entropy_is_one_for_uniform_and_zero_for_certain_probabilities() -> None:
    uniform = torch.full((4, 2, 2), 0.25)
    certain = torch.zeros(4, 2, 2)
    certain[1] = 1
    assert torch.allclose(normalised_entropy(uniform, regions=False), torch.ones(2, 2))
    assert torch.allclose(normalised_entropy(certain, regions=False), torch.zeros(2, 2), atol=1e-6)
    half = torch.full((2, 3), 0.5)
    assert torch.allclose(normalised_entropy(half, regions=True), torch.ones(3))
    assert math.isclose(float(normalised_entropy(torch.tensor([[0.0], [1.0]]), regions=True)[0]), 0.0, abs_tol=1e-6)


@pytest.mark.parametrize("ndim", [2, 3])
def test_onednn_convolutions_compute_the_same_network(ndim: int) -> None:
    from AutoSegNetLib.inference.cpu_speed import onednn_available, use_onednn_convolutions

    if not onednn_available():
        pytest.skip("this PyTorch has no oneDNN")
    reference, fast = a_conv_net(ndim, seed=3), a_conv_net(ndim, seed=3)
    assert use_onednn_convolutions(fast) == sum(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in fast.modules())
    x = torch.randn(1, 2, *([8] * ndim))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), rtol=1e-4, atol=1e-5)
    assert fast(x.requires_grad_()).requires_grad  # training-style calls keep PyTorch's differentiable path


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("offset", [0.0, 50.0])  # a large mean: a one-pass E[x^2] - mean^2 would lose digits
def test_channels_last_instance_norm_matches_pytorch_and_keeps_the_layout(ndim: int, offset: float) -> None:
    from AutoSegNetLib.inference.cpu_speed import channels_last_instance_norm

    torch.manual_seed(ndim)
    norm = (nn.InstanceNorm2d if ndim == 2 else nn.InstanceNorm3d)(5, affine=True)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 5, *([6, 7, 9][-ndim:])) * 3 + offset
    layout = torch.channels_last if ndim == 2 else torch.channels_last_3d
    with torch.inference_mode():
        exact = nn.functional.instance_norm(x.double(), weight=norm.weight.double(), bias=norm.bias.double(),
                                            eps=norm.eps)
        fast = channels_last_instance_norm(x.contiguous(memory_format=layout), norm.weight, norm.bias, norm.eps)
        pytorch = norm(x)
    assert fast.is_contiguous(memory_format=layout)
    fast_error = (fast.double() - exact).abs().max().item()
    assert fast_error <= 2 * max((pytorch.double() - exact).abs().max().item(), 1e-6)
    with torch.inference_mode():
        plain = channels_last_instance_norm(x.contiguous(memory_format=layout), None, None, 1e-5)
    torch.testing.assert_close(plain, nn.functional.instance_norm(x, eps=1e-5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", ["PlainConvUNet", "ResidualEncoderUNet"])
def test_a_network_prepared_for_the_cpu_computes_the_same_function(ndim: int, name: str) -> None:
    from AutoSegNetLib.inference.cpu_speed import MEMORY_FORMAT_ATTRIBUTE, prepare_for_cpu

    networks = []
    for _ in range(2):
        torch.manual_seed(5)
        networks.append(build_network(tiny_spec(ndim, name, stages=3), 2, 3, deep_supervision=False).eval())
    reference, fast = networks
    prepare_for_cpu(fast, onednn=True, channels_last=True)
    layout = getattr(fast, MEMORY_FORMAT_ATTRIBUTE)
    assert layout == (torch.channels_last if ndim == 2 else torch.channels_last_3d)
    x = torch.randn(1, 2, *([16] * ndim))
    with torch.inference_mode():
        torch.testing.assert_close(fast(x.contiguous(memory_format=layout)), reference(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(fast(x), reference(x), rtol=1e-4, atol=1e-5)  # plain layout: PyTorch's path
