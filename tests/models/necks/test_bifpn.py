"""BiFPN: topology, parity with effdet, gradients, odd sizes, level ranges, bad arguments."""
import math

import pytest
import torch

from mmplug_agg.models.necks.bifpn import (BiFPN, bifpn_topology, downsample, topology_outputs,
                                           upsample)

effdet = pytest.importorskip('effdet')
from effdet.config import get_efficientdet_config, get_fpn_config  # noqa: E402
from effdet.efficientdet import BiFpn  # noqa: E402

D0_CHANNELS = [40, 112, 320]  # EfficientNet-B0 strides 8, 16, 32
D3_CHANNELS = [48, 136, 384]  # EfficientNet-B3


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def effdet_bifpn(name: str, in_channels, image_size: int, fpn_name=None) -> BiFpn:
    config = get_efficientdet_config(name)
    config.image_size = (image_size, image_size)
    if fpn_name is not None:
        config.fpn_name = fpn_name
    feature_info = [dict(num_chs=c, reduction=2**(3 + i)) for i, c in enumerate(in_channels)]
    return BiFpn(config, feature_info)


def ceil_sizes(height: int, width: int, strides):
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


def features(channels, sizes, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, h, w, generator=gen) for c, (h, w) in zip(channels, sizes)]


@pytest.mark.parametrize('num_levels', range(2, 8))
def test_topology_matches_effdet_graph(num_levels):
    reference = get_fpn_config('bifpn_fa', min_level=3, max_level=2 + num_levels).nodes
    expected = [(node['feat_level'] - 3, tuple(node['inputs_offsets'])) for node in reference]
    nodes = bifpn_topology(num_levels)
    assert nodes == expected
    # Outputs are the newest node per level: effdet returns the last num_levels nodes.
    total = num_levels + len(nodes)
    assert topology_outputs(nodes, num_levels) == list(range(total - num_levels, total))


def test_topology_without_skip_edges():
    nodes = bifpn_topology(4, skip_edges=False)
    assert [len(inputs) for _, inputs in nodes] == [2] * len(nodes)
    with pytest.raises(ValueError, match='num_levels'):
        bifpn_topology(1)


@pytest.mark.parametrize('fusion_mode,fpn_name', [('fastattn', 'bifpn_fa'), ('attn', 'bifpn_attn'),
                                                  ('sum', 'bifpn_sum')])
def test_parity_with_effdet_d0(fusion_mode, fpn_name):
    torch.manual_seed(0)
    reference = effdet_bifpn('efficientdet_d0', D0_CHANNELS, 256, fpn_name)
    ours = BiFPN(D0_CHANNELS, 64, num_outs=5, num_repeats=3, fusion_mode=fusion_mode)
    assert num_params(ours) == num_params(reference)

    # Random weights, norm statistics and fusion weights, copied over in order.
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith('edge_weights'):
                tensor.uniform_(-0.2, 1.5)
            else:
                tensor.normal_(0, 0.3)
    ref_state = reference.state_dict()
    our_state = ours.state_dict()
    assert len(ref_state) == len(our_state)
    mapped = {}
    for (our_name, our_tensor), (ref_name, ref_tensor) in zip(our_state.items(), ref_state.items()):
        assert our_tensor.shape == ref_tensor.shape, (our_name, ref_name)
        mapped[our_name] = ref_tensor
    ours.load_state_dict(mapped)

    ours.eval()
    reference.eval()
    feats = features(D0_CHANNELS, [(32, 32), (16, 16), (8, 8)])
    with torch.no_grad():
        expected = reference(list(feats))
        got = ours(feats)
    assert len(got) == len(expected) == 5
    for out, ref in zip(got, expected):
        assert out.shape == ref.shape
        assert (out - ref).abs().max().item() < 1e-5


def test_param_count_matches_effdet_d3():
    reference = effdet_bifpn('efficientdet_d3', D3_CHANNELS, 896)
    ours = BiFPN(D3_CHANNELS, 160, num_outs=5, num_repeats=6)
    assert num_params(ours) == num_params(reference)


@pytest.mark.parametrize('fusion_mode', ['fastattn', 'attn'])
def test_every_fusion_weight_gets_a_gradient(fusion_mode):
    neck = BiFPN(D0_CHANNELS, 16, num_outs=5, num_repeats=2, fusion_mode=fusion_mode)
    outs = neck(features(D0_CHANNELS, [(16, 16), (8, 8), (4, 4)]))
    sum(out.mean() for out in outs).backward()
    weights = {n: p for n, p in neck.named_parameters() if n.endswith('fusion_weights')}
    # 5 levels: 4 top-down + 4 bottom-up nodes per cell.
    assert len(weights) == 2 * 8
    for name, param in weights.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in neck.parameters())
    assert len(neck.normalised_fusion_weights()) == 16


def test_sum_mode_has_no_fusion_weights():
    neck = BiFPN(D0_CHANNELS, 16, num_outs=5, num_repeats=1, fusion_mode='sum')
    assert not [n for n, _ in neck.named_parameters() if 'fusion_weights' in n]


def test_odd_input_size_ceil_division():
    # A 333x517 image through a stride-8/16/32 backbone that rounds up.
    sizes = ceil_sizes(333, 517, [8, 16, 32])
    neck = BiFPN(D0_CHANNELS, 16, num_outs=5, num_repeats=2)
    outs = neck(features(D0_CHANNELS, sizes, batch=1))
    expected = sizes + ceil_sizes(333, 517, [64, 128])
    assert [tuple(o.shape[-2:]) for o in outs] == expected
    sum(o.mean() for o in outs).backward()


def test_odd_input_size_floor_division():
    # A backbone that rounds down: pooled maps are cropped to the neighbour's size.
    sizes = [(333 // s, 517 // s) for s in (4, 8, 16, 32)]
    channels = [8, 16, 24, 32]
    neck = BiFPN(channels, 8, num_outs=5, num_repeats=1)
    outs = neck(features(channels, sizes, batch=1))
    assert [tuple(o.shape[-2:]) for o in outs[:4]] == sizes
    assert tuple(outs[4].shape[-2:]) == (math.ceil(sizes[3][0] / 2), math.ceil(sizes[3][1] / 2))


def test_resampling_hits_exact_sizes():
    x = torch.arange(25.).view(1, 1, 5, 5)
    assert tuple(downsample(x, (3, 3)).shape[-2:]) == (3, 3)  # ceil(5 / 2): no fix needed
    cropped = downsample(x, (2, 2))
    assert torch.equal(cropped, downsample(x, (3, 3))[..., :2, :2])
    padded = downsample(x, (4, 3))  # one row short: the last row is repeated
    assert torch.equal(padded[..., 3, :], padded[..., 2, :])
    assert tuple(upsample(x, (9, 11)).shape[-2:]) == (9, 11)


@pytest.mark.parametrize('num_ins', range(2, 7))
def test_two_to_six_input_levels(num_ins):
    channels = [8 * (i + 1) for i in range(num_ins)]
    sizes = [(128 // 2**i, 96 // 2**i) for i in range(num_ins)]
    neck = BiFPN(channels, 8, num_outs=num_ins + 1, num_repeats=2)
    outs = neck(features(channels, sizes, batch=1))
    assert len(outs) == num_ins + 1
    assert [tuple(o.shape[-2:]) for o in outs[:num_ins]] == sizes
    assert all(o.shape[1] == 8 for o in outs)


def test_start_and_end_level():
    channels = [8, 16, 32, 64]
    sizes = [(32, 32), (16, 16), (8, 8), (4, 4)]
    # RetinaNet style: C3-C5 plus two extra levels.
    neck = BiFPN(channels, 8, num_outs=5, start_level=1, num_repeats=1)
    outs = neck(features(channels, sizes))
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1]
    # A middle slice, no extra levels; the first input already has out_channels.
    neck = BiFPN(channels, 16, num_outs=2, start_level=1, end_level=2, num_repeats=1)
    outs = neck(features(channels, sizes))
    assert [o.shape[-1] for o in outs] == [16, 8]


@pytest.mark.parametrize('separable_conv,pre_act', [(False, True), (True, False)])
def test_ablation_switches(separable_conv, pre_act):
    neck = BiFPN(D0_CHANNELS, 16, num_outs=5, num_repeats=1, separable_conv=separable_conv,
                 pre_act=pre_act, skip_edges=False)
    outs = neck(features(D0_CHANNELS, [(16, 16), (8, 8), (4, 4)]))
    assert len(outs) == 5


def test_registered_in_mmdet_and_mmseg():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS):
        neck = registry.build(dict(type='BiFPN', in_channels=[8, 16], out_channels=8, num_outs=3,
                                   num_repeats=1))
        assert isinstance(neck, BiFPN)
    neck.init_weights()


@pytest.mark.parametrize('kwargs,argument', [
    (dict(in_channels=[], out_channels=8, num_outs=5), 'in_channels'),
    (dict(in_channels=[8, 16, 32], out_channels=8, num_outs=2), 'num_outs'),
    (dict(in_channels=[8, 16, 32], out_channels=8, num_outs=5, fusion_mode='max'), 'fusion_mode'),
    (dict(in_channels=[8, 16, 32], out_channels=8, num_outs=5, start_level=3), 'start_level'),
    (dict(in_channels=[8, 16, 32], out_channels=8, num_outs=5, end_level=1), 'num_outs'),
    (dict(in_channels=[8, 16, 32], out_channels=8, num_outs=5, num_repeats=0), 'num_repeats'),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        BiFPN(**kwargs)


def test_mismatched_inputs_name_in_channels():
    neck = BiFPN([8, 16, 32], 8, num_outs=5, num_repeats=1)
    with pytest.raises(ValueError, match='in_channels'):
        neck(features([8, 16], [(8, 8), (4, 4)]))
    with pytest.raises(ValueError, match='in_channels'):
        neck(features([8, 16, 24], [(8, 8), (4, 4), (2, 2)]))
