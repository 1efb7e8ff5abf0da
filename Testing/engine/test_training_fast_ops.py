"""CPU speed-ups that must not change results: GroupNorm for InstanceNorm, channels-last memory."""

from __future__ import annotations

import pytest
import torch

from AutoSegNetLib.network import build_network
from AutoSegNetLib.training.fast_ops import instance_norm_as_group_norm


@pytest.mark.parametrize("ndim", [2, 3])
def test_group_norm_kernels_compute_the_same_network_with_the_same_state_dict(ndim):
    spec = {"name": "PlainConvUNet", "ndim": ndim, "features_per_stage": [4, 8], "kernel_sizes": [[3] * ndim] * 2,
            "strides": [[1] * ndim, [2] * ndim], "n_conv_per_stage": [2, 2], "n_conv_per_stage_decoder": [1]}
    torch.manual_seed(0)
    reference = build_network(spec, 2, 3, deep_supervision=False)
    fast = build_network(spec, 2, 3, deep_supervision=False)
    fast.load_state_dict(reference.state_dict())
    assert instance_norm_as_group_norm(fast) == 5
    assert list(fast.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 2, *[8] * ndim)
    torch.testing.assert_close(fast(x), reference(x), rtol=1e-5, atol=1e-5)
    fast(x).square().sum().backward()
    reference(x).square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-3, msg=name)  # conv biases before a norm: ~0


def test_channels_last_3d_gives_the_same_outputs():
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 6, 7, 8)
    expected = conv(x)
    fast = conv.to(memory_format=torch.channels_last_3d)(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)
