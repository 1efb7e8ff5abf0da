"""Dynamic U-Nets: shapes, deep supervision, feature-map sizes, checkpoint key names, registry and spec."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from AutoSegNetLib.errors import AutoSegNetError
from AutoSegNetLib.network import (
    NETWORKS,
    BasicBlockD,
    ConvDropoutNormReLU,
    EncoderLayout,
    LayerOps,
    NetworkSpec,
    NetworkSpecError,
    ResidualEncoder,
    StackedConvBlocks,
    UnknownNetworkError,
    build_network,
    get_network_class,
    ops_for_dim,
)

CONVS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
INPUT_CHANNELS = 2
NUM_CLASSES = 3

# Small versions of planned topologies; the 2D and anisotropic ones cap the features like nnU-Net's 320,
# so their last stage is strided without changing the channels.
TOPOLOGIES = {
    "2d": {
        "ndim": 2,
        "patch": (64, 48),
        "features_per_stage": [4, 8, 16, 16],
        "kernel_sizes": [[3, 3]] * 4,
        "strides": [[1, 1], [2, 2], [2, 2], [2, 2]],
        "outputs": [(64, 48), (32, 24), (16, 12)],
    },
    "3d_hippocampus": {
        "ndim": 3,
        "patch": (40, 56, 40),
        "features_per_stage": [4, 8, 16, 32],
        "kernel_sizes": [[3, 3, 3]] * 4,
        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
        "outputs": [(40, 56, 40), (20, 28, 20), (10, 14, 10)],
    },
    "3d_anisotropic": {
        "ndim": 3,
        "patch": (8, 32, 32),
        "features_per_stage": [4, 8, 16, 16],
        "kernel_sizes": [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "outputs": [(8, 32, 32), (8, 16, 16), (4, 8, 8)],
    },
}
ENCODER_DEPTH = {"PlainConvUNet": [2, 2, 2, 2], "ResidualEncoderUNet": [1, 3, 4, 6]}
DECODER_DEPTH = {"PlainConvUNet": [2, 2, 2], "ResidualEncoderUNet": [1, 1, 1]}


@pytest.fixture(autouse=True, scope="module")
def two_threads() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def a_spec(name: str, topology: str) -> NetworkSpec:
    t = TOPOLOGIES[topology]
    return NetworkSpec(
        name=name,
        ndim=t["ndim"],
        features_per_stage=t["features_per_stage"],
        kernel_sizes=t["kernel_sizes"],
        strides=t["strides"],
        n_conv_per_stage=ENCODER_DEPTH[name],
        n_conv_per_stage_decoder=DECODER_DEPTH[name],
    )


def a_network(name: str, topology: str, deep_supervision: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return build_network(a_spec(name, topology), INPUT_CHANNELS, NUM_CLASSES, deep_supervision)


def an_input(topology: str, batch: int = 2) -> torch.Tensor:
    return torch.randn(
        batch, INPUT_CHANNELS, *TOPOLOGIES[topology]["patch"], generator=torch.Generator().manual_seed(1)
    )


def elements_counted_by_hooks(network: nn.Module, patch: tuple[int, ...]) -> int:
    """Run the network and add up the outputs of every conv and transposed conv that ran, plus residual skip
    paths that only pool (which dynamic-network-architectures counts as a feature map too)."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel()

    handles = []
    for name, module in network.named_modules():
        pool_only_skip = (
            name.endswith(".skip")
            and isinstance(module, nn.Sequential)
            and not any(isinstance(m, CONVS) for m in module.modules())
        )
        if isinstance(module, CONVS) or pool_only_skip:
            handles.append(module.register_forward_hook(count))
    with torch.no_grad():
        network(torch.zeros(1, INPUT_CHANNELS, *patch))
    for handle in handles:
        handle.remove()
    return total


networks = pytest.mark.parametrize("name", sorted(NETWORKS))
topologies = pytest.mark.parametrize("topology", sorted(TOPOLOGIES))


@networks
@topologies
def test_network_returns_one_logit_map_per_decoder_stage_highest_resolution_first_and_backpropagates(
    name: str, topology: str
) -> None:
    network = a_network(name, topology, deep_supervision=True)

    outputs = network(an_input(topology))

    assert isinstance(outputs, list)
    assert [tuple(o.shape) for o in outputs] == [
        (2, NUM_CLASSES, *s) for s in TOPOLOGIES[topology]["outputs"]
    ]
    sum(o.square().mean() for o in outputs).backward()
    for parameter_name, parameter in network.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
    first_conv = next(network.encoder.parameters())  # the input conv (the stem for ResEnc)
    assert first_conv.grad.abs().sum() > 0


@networks
@topologies
def test_network_without_deep_supervision_returns_a_single_full_resolution_tensor(
    name: str, topology: str
) -> None:
    built_without = a_network(name, topology, deep_supervision=False)
    switched_off = a_network(name, topology, deep_supervision=True)
    switched_off.deep_supervision = False
    expected = (1, NUM_CLASSES, *TOPOLOGIES[topology]["patch"])

    with torch.no_grad():
        single = built_without(an_input(topology, batch=1))
        after_switch = switched_off(an_input(topology, batch=1))

    assert switched_off.decoder.deep_supervision is False
    assert isinstance(single, torch.Tensor) and tuple(single.shape) == expected
    assert isinstance(after_switch, torch.Tensor) and tuple(after_switch.shape) == expected


@networks
@topologies
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_feature_map_size_equals_the_elements_the_convs_produce_when_run(
    name: str, topology: str, deep_supervision: bool
) -> None:
    network = a_network(name, topology, deep_supervision)
    patch = TOPOLOGIES[topology]["patch"]

    assert network.feature_map_size(patch) == elements_counted_by_hooks(network, patch)


@networks
@topologies
def test_feature_map_size_is_positive_and_grows_with_the_patch(name: str, topology: str) -> None:
    network = a_network(name, topology)
    patch = TOPOLOGIES[topology]["patch"]
    larger = (2 * patch[0], *patch[1:])

    size = network.feature_map_size(patch)

    assert isinstance(size, int)
    assert 0 < size < network.feature_map_size(larger)
    assert network.feature_map_size(larger) == elements_counted_by_hooks(network, larger)


def test_feature_map_size_is_the_sum_of_encoder_and_decoder_sizes() -> None:
    network = a_network("ResidualEncoderUNet", "2d")
    patch = TOPOLOGIES["2d"]["patch"]

    assert network.feature_map_size(patch) == (
        network.encoder.feature_map_size(patch) + network.decoder.feature_map_size(patch)
    )


@pytest.mark.parametrize(
    ("block", "input_size", "expected"),
    [
        # output channels x voxels after the stride
        (ConvDropoutNormReLU(LayerOps(nn.Conv3d), 2, 5, [1, 3, 3], [1, 2, 2]), [8, 16, 16], 5 * 8 * 8 * 8),
        (ConvDropoutNormReLU(LayerOps(nn.Conv2d), 2, 5, 3, 1), [6, 4], 5 * 6 * 4),
        # first unit strided, the second at the strided size
        (StackedConvBlocks(2, LayerOps(nn.Conv2d), 3, 4, 3, 2), [8, 6], 4 * 4 * 3 + 4 * 4 * 3),
        # conv1, conv2, and the pooled + projected skip
        (BasicBlockD(LayerOps(nn.Conv3d), 4, 8, 3, 2), [4, 8, 8], 3 * 8 * 2 * 4 * 4),
        # conv1, conv2, identity skip not counted
        (BasicBlockD(LayerOps(nn.Conv2d), 8, 8, 3, 1), [6, 6], 2 * 8 * 6 * 6),
    ],
    ids=[
        "conv_unit_anisotropic_stride",
        "conv_unit_2d",
        "conv_stack",
        "residual_projected",
        "residual_identity",
    ],
)
def test_block_reports_its_own_feature_map_size(
    block: nn.Module, input_size: list[int], expected: int
) -> None:
    assert block.feature_map_size(input_size) == expected


def test_feature_map_size_rejects_a_patch_with_the_wrong_number_of_axes() -> None:
    with pytest.raises(ValueError, match="spatial axes"):
        a_network("PlainConvUNet", "2d").feature_map_size([32, 64, 48])


EXPECTED_KEYS = {
    "PlainConvUNet": [
        "encoder.stages.0.0.convs.0.conv.weight",
        "encoder.stages.0.0.convs.0.conv.bias",
        "encoder.stages.0.0.convs.0.norm.weight",
        "encoder.stages.0.0.convs.0.norm.bias",
        "encoder.stages.0.0.convs.0.all_modules.0.weight",
        "encoder.stages.0.0.convs.0.all_modules.1.weight",
        "encoder.stages.3.0.convs.1.conv.weight",
        "decoder.stages.0.convs.0.conv.weight",
        "decoder.stages.2.convs.1.norm.bias",
        "decoder.transpconvs.0.weight",
        "decoder.transpconvs.0.bias",
        "decoder.seg_layers.0.weight",
        "decoder.seg_layers.2.bias",
        "decoder.encoder.stages.0.0.convs.0.conv.weight",
    ],
    "ResidualEncoderUNet": [
        "encoder.stem.convs.0.conv.weight",
        "encoder.stem.convs.0.norm.weight",
        "encoder.stem.convs.0.all_modules.0.weight",
        "encoder.stages.0.blocks.0.conv1.conv.weight",
        "encoder.stages.1.blocks.0.conv1.conv.weight",
        "encoder.stages.1.blocks.0.conv1.norm.weight",
        "encoder.stages.1.blocks.0.conv2.conv.weight",
        "encoder.stages.1.blocks.0.conv2.norm.weight",
        "encoder.stages.1.blocks.0.skip.1.conv.weight",
        "encoder.stages.1.blocks.0.skip.1.norm.weight",
        "encoder.stages.1.blocks.0.skip.1.all_modules.0.weight",
        "encoder.stages.3.blocks.5.conv2.norm.bias",
        "decoder.stages.0.convs.0.conv.weight",
        "decoder.transpconvs.2.weight",
        "decoder.seg_layers.2.weight",
        "decoder.encoder.stem.convs.0.conv.weight",
    ],
}


@networks
def test_state_dict_uses_the_dynamic_network_architectures_key_names(name: str) -> None:
    keys = set(a_network(name, "3d_anisotropic").state_dict())

    assert set(EXPECTED_KEYS[name]) <= keys
    assert all(key.startswith(("encoder.", "decoder.")) for key in keys)
    assert not any(key.endswith("skip.1.conv.bias") for key in keys)  # projections have no bias


def test_state_dict_tensors_have_the_planned_shapes() -> None:
    state = a_network("PlainConvUNet", "3d_anisotropic").state_dict()

    assert tuple(state["encoder.stages.0.0.convs.0.conv.weight"].shape) == (4, INPUT_CHANNELS, 1, 3, 3)
    assert tuple(state["decoder.transpconvs.2.weight"].shape) == (8, 4, 1, 2, 2)  # kernel = stride
    assert tuple(state["decoder.stages.2.convs.0.conv.weight"].shape) == (4, 8, 1, 3, 3)  # on the concat
    assert tuple(state["decoder.seg_layers.2.weight"].shape) == (NUM_CLASSES, 4, 1, 1, 1)


def test_residual_encoder_has_the_planned_number_of_blocks_per_stage() -> None:
    network = a_network("ResidualEncoderUNet", "2d")

    assert [len(stage.blocks) for stage in network.encoder.stages] == [1, 3, 4, 6]
    assert [block.has_skip_path_ops for block in network.encoder.stages[3].blocks] == [True] + [False] * 5


def test_residual_encoder_builds_its_stages_from_the_given_block_type() -> None:
    class TaggedBlock(BasicBlockD):
        pass

    layout = EncoderLayout(features=[4, 8], kernel_sizes=[[3, 3]] * 2, strides=[[1, 1], [2, 2]], depths=[1, 2])
    encoder = ResidualEncoder(INPUT_CHANNELS, layout, LayerOps.nnunet_defaults(2), block=TaggedBlock)

    assert [type(block) for stage in encoder.stages for block in stage.blocks] == [TaggedBlock] * 3
    assert tuple(encoder(torch.zeros(1, INPUT_CHANNELS, 8, 6)).shape) == (1, 8, 4, 3)


def test_layer_ops_keeps_a_read_only_copy_of_the_layer_settings() -> None:
    settings = {"eps": 1e-5, "affine": True}
    ops = LayerOps(nn.Conv2d, norm_op=nn.InstanceNorm2d, norm_kwargs=settings)
    settings["eps"] = 1.0

    assert ops.norm_kwargs == {"eps": 1e-5, "affine": True}
    with pytest.raises(TypeError):
        ops.norm_kwargs["eps"] = 1.0  # type: ignore[index]
    assert pickle.loads(pickle.dumps(ops)) == ops


def test_a_built_network_can_be_deep_copied_with_its_layer_ops() -> None:
    network = a_network("ResidualEncoderUNet", "2d")

    copied = copy.deepcopy(network)

    assert copied.encoder.ops == network.encoder.ops == LayerOps.nnunet_defaults(2)
    assert copied.decoder.encoder is copied.encoder


def test_layer_ops_rejects_a_conv_that_is_neither_2d_nor_3d() -> None:
    with pytest.raises(ValueError, match="conv_op must be nn.Conv2d or nn.Conv3d"):
        LayerOps(nn.Conv1d)


def test_encoder_layout_rejects_settings_for_another_number_of_stages() -> None:
    with pytest.raises(ValueError, match=r"strides \[\[1, 1\]\] must have one entry per stage \(n_stages=2\)"):
        EncoderLayout(features=[4, 8], kernel_sizes=[[3, 3]] * 2, strides=[[1, 1]], depths=[1, 1])


def test_unknown_network_name_error_suggests_the_closest_name_and_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNetworkError) as caught:
        get_network_class("PlainConvUnet")

    assert isinstance(caught.value, KeyError) and isinstance(caught.value, AutoSegNetError)
    message = str(caught.value)
    assert "Did you mean 'PlainConvUNet'?" in message
    assert "PlainConvUNet, ResidualEncoderUNet" in message


@networks
def test_every_registered_name_resolves_to_the_class_of_that_name(name: str) -> None:
    assert get_network_class(name) is NETWORKS[name]
    assert NETWORKS[name].__name__ == name


def test_build_network_rejects_an_unknown_network_name() -> None:
    spec = a_spec("PlainConvUNet", "2d").to_dict() | {"name": "ResidualEncoderUnet"}

    with pytest.raises(UnknownNetworkError, match="Did you mean 'ResidualEncoderUNet'"):
        build_network(spec, INPUT_CHANNELS, NUM_CLASSES, deep_supervision=False)


def test_network_spec_survives_a_json_round_trip_and_builds_the_same_network() -> None:
    spec = a_spec("ResidualEncoderUNet", "3d_anisotropic")

    again = NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    from_dict = build_network(spec.to_dict(), INPUT_CHANNELS, NUM_CLASSES, deep_supervision=True)
    from_spec = build_network(spec, INPUT_CHANNELS, NUM_CLASSES, deep_supervision=True)

    assert again == spec
    assert {k: v.shape for k, v in from_dict.state_dict().items()} == {
        k: v.shape for k, v in from_spec.state_dict().items()
    }


def test_network_spec_rejects_an_unknown_field_naming_it() -> None:
    data = a_spec("PlainConvUNet", "2d").to_dict()
    data["kernel_size"] = data.pop("kernel_sizes")

    with pytest.raises(
        NetworkSpecError, match="unknown NetworkSpec field 'kernel_size'. Did you mean 'kernel_sizes'"
    ):
        NetworkSpec.from_dict(data, source="plans.json: configurations.2d.network")


def test_network_spec_rejects_a_missing_field_naming_it() -> None:
    data = a_spec("PlainConvUNet", "2d").to_dict()
    del data["strides"]

    with pytest.raises(NetworkSpecError, match="missing NetworkSpec field.*'strides'"):
        NetworkSpec.from_dict(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ndim", 4),
        ("features_per_stage", [32]),
        ("kernel_sizes", [[3, 3]] * 3),
        ("kernel_sizes", [[3, 3, 3]] * 4),
        ("kernel_sizes", [[3, 3], [3, 3], [2, 2], [3, 3]]),
        ("strides", [[1, 1], [2, 2], [2, 0], [2, 2]]),
        ("n_conv_per_stage", [2, 2, 2]),
        ("n_conv_per_stage_decoder", [2, 2, 2, 2]),
    ],
    ids=[
        "ndim_4",
        "one_stage",
        "kernel_per_stage_missing",
        "kernel_wrong_axes",
        "even_kernel",
        "zero_stride",
        "encoder_depth_count",
        "decoder_depth_count",
    ],
)
def test_network_spec_rejects_a_malformed_field_naming_it(field: str, value: object) -> None:
    data = a_spec("PlainConvUNet", "2d").to_dict() | {field: value}

    with pytest.raises(NetworkSpecError, match=f"plans.json: NetworkSpec field '{field}'"):
        NetworkSpec.from_dict(data, source="plans.json")


@networks
def test_built_network_has_he_initialised_convs_with_zero_bias(name: str) -> None:
    network = a_network(name, "3d_hippocampus")
    deepest = next(network.encoder.stages[3].parameters())  # 32 x 16 x 3 x 3 x 3 weights
    fan_in = math.prod(deepest.shape[1:])

    biases = [m.bias for m in network.modules() if isinstance(m, CONVS) and m.bias is not None]
    assert biases and all(torch.count_nonzero(b) == 0 for b in biases)
    assert deepest.std().item() == pytest.approx(math.sqrt(2 / (1 + 1e-4)) / math.sqrt(fan_in), rel=0.1)


def test_residual_blocks_start_with_a_zeroed_last_norm_and_plain_norms_start_at_one() -> None:
    residual = a_network("ResidualEncoderUNet", "2d")
    plain = a_network("PlainConvUNet", "2d")
    blocks = [m for m in residual.modules() if isinstance(m, BasicBlockD)]

    assert len(blocks) == 1 + 3 + 4 + 6
    assert all(torch.count_nonzero(b.conv2.norm.weight) == 0 for b in blocks)
    assert all(torch.count_nonzero(b.conv2.norm.bias) == 0 for b in blocks)
    assert all(torch.all(b.conv1.norm.weight == 1) for b in blocks)
    assert all(torch.all(m.weight == 1) for m in plain.modules() if isinstance(m, nn.InstanceNorm2d))


def test_build_network_uses_nnunet_layer_defaults() -> None:
    network = a_network("PlainConvUNet", "3d_anisotropic")
    unit = network.encoder.stages[0][0].convs[0]

    assert isinstance(unit.conv, nn.Conv3d) and unit.conv.bias is not None
    assert isinstance(unit.norm, nn.InstanceNorm3d) and unit.norm.affine and unit.norm.eps == 1e-5
    assert (
        isinstance(unit.nonlin, nn.LeakyReLU) and unit.nonlin.negative_slope == 1e-2 and unit.nonlin.inplace
    )
    assert not hasattr(unit, "dropout")
    assert list(unit.all_modules) == [unit.conv, unit.norm, unit.nonlin]


@pytest.mark.parametrize(
    ("ndim", "conv", "norm", "transposed"),
    [
        (2, nn.Conv2d, nn.InstanceNorm2d, nn.ConvTranspose2d),
        (3, nn.Conv3d, nn.InstanceNorm3d, nn.ConvTranspose3d),
    ],
)
def test_ops_for_dim_picks_the_operations_of_that_dimension(
    ndim: int, conv: type, norm: type, transposed: type
) -> None:
    ops = ops_for_dim(ndim)

    assert (ops.conv, ops.norm, ops.transposed_conv) == (conv, norm, transposed)


def test_ops_for_dim_rejects_other_dimensions() -> None:
    with pytest.raises(ValueError, match="2D or 3D"):
        ops_for_dim(1)
