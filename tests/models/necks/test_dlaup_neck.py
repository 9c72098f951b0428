"""DLAUpNeck: CenterNet's single map, FPN-style pyramid, odd sizes, gradients, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.necks import DLAUpNeck
from mmplug_agg.registry import MODEL_REGISTRIES

WIDTHS = [8, 16, 24, 32]
DLA34 = [64, 128, 256, 512]  # DLA-34 levels 2..5 (strides 4..32), CenterNet's inputs
CENTERNET = dict(node_type='sum', projection_kernel_size=3)
DCN = dict(type='DCNv2', deform_groups=1)


def ceil_sizes(height, width, strides=(4, 8, 16, 32)):
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


ODD_SIZES = ceil_sizes(333, 517)  # (84, 130), (42, 65), (21, 33), (11, 17)
EXACT_SIZES = ceil_sizes(128, 192)


def features(sizes=ODD_SIZES, widths=WIDTHS, batch=2, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, h, w, generator=gen, dtype=dtype).requires_grad_()
        for c, (h, w) in zip(widths, sizes)
    ]


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def randomise_(module, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.2)
    return module


def conv_bn_relu(x, conv_module):
    conv, norm = conv_module.conv, conv_module.norm
    x = F.conv2d(x, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2)
    x = F.batch_norm(x,
                     norm.running_mean,
                     norm.running_var,
                     norm.weight,
                     norm.bias,
                     training=False,
                     eps=norm.eps)
    return F.relu(x)


def up(x, deconv, factor, size):
    y = F.conv_transpose2d(x, deconv.weight, stride=factor, padding=factor // 2, groups=x.shape[1])
    return y[..., :size[0], :size[1]]


def centernet_ida(ida, layers, startp, endp, factors):
    """CenterNet's IDA-Up, in place: layers[i] = node(up(proj(layers[i])) + layers[i - 1])."""
    size = layers[startp].shape[-2:]
    for i in range(startp + 1, endp):
        k = i - startp
        layers[i] = up(conv_bn_relu(layers[i], ida.projections[k]), ida.upsamples[k], factors[k],
                       size)
        layers[i] = conv_bn_relu(layers[i] + layers[i - 1], ida.nodes[k - 1])


def centernet_reference(neck, inputs):
    """CenterNet's DLASeg after the backbone: DLA-Up, then IDA-Up over all but the coarsest."""
    layers = list(inputs)
    out = [layers[-1]]
    for i in range(len(layers) - 1):
        centernet_ida(neck.dla_up.stages[i], layers,
                      len(layers) - i - 2, len(layers), [1] + [2] * (i + 1))
        out.insert(0, layers[-1])
    y = [x.clone() for x in out[:-1]]
    centernet_ida(neck.ida_up, y, 0, len(y), [2**i for i in range(len(y))])
    return y[-1]


@pytest.mark.parametrize('sizes', [ODD_SIZES, EXACT_SIZES], ids=['333x517', '128x192'])
def test_single_mode_matches_centernet(sizes):
    neck = DLAUpNeck(WIDTHS, **CENTERNET)
    assert neck.ida_up.up_factors == [1, 2, 4] and neck.ida_up.in_channels == WIDTHS[:3]
    randomise_(neck.double()).eval()
    inputs = features(sizes, batch=1, dtype=torch.float64)
    with torch.no_grad():
        outs = neck(inputs)
        expected = centernet_reference(neck, inputs)
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (1, WIDTHS[0], *sizes[0])
    torch.testing.assert_close(outs[0], expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('node_type', ['concat', 'sum'])
@pytest.mark.parametrize('upsample_mode', ['deconv', 'bilinear'])
def test_single_mode_shapes_and_gradients(node_type, upsample_mode):
    neck = DLAUpNeck(WIDTHS, out_channels=12, node_type=node_type, upsample_mode=upsample_mode)
    inputs = features()
    (out, ) = neck(inputs)
    assert out.shape == (2, 12, *ODD_SIZES[0])
    out.mean().backward()
    assert not [name for name, p in neck.named_parameters() if p.grad is None]
    # The coarsest input reaches the single map through DLA-Up.
    assert all(x.grad is not None for x in inputs)


@pytest.mark.parametrize('sizes', [ODD_SIZES, EXACT_SIZES], ids=['333x517', '128x192'])
def test_pyramid_mode_levels_and_gradients(sizes):
    neck = DLAUpNeck(WIDTHS, out_mode='pyramid', out_channels=20, num_outs=6)
    inputs = features(sizes)
    outs = neck(inputs)
    expected_sizes = list(sizes)
    for _ in range(2):
        h, w = expected_sizes[-1]
        expected_sizes.append((math.ceil(h / 2), math.ceil(w / 2)))
    assert [tuple(o.shape) for o in outs] == [(2, 20, *s) for s in expected_sizes]
    # Extra levels: FPN's 1x1 max-pool with stride 2 of the level below.
    torch.testing.assert_close(outs[4], F.max_pool2d(outs[3], 1, stride=2))
    # Each level is its DLA-Up output through a linear 1x1 conv + BN.
    conv = neck.out_convs[1]
    assert not conv.with_activation and conv.with_norm and conv.conv.kernel_size == (1, 1)
    neck.eval()
    with torch.no_grad():
        torch.testing.assert_close(neck(inputs)[1], conv(neck.dla_up(inputs)[1]))
    neck.train()
    sum(o.mean() for o in neck(inputs)).backward()
    assert not [name for name, p in neck.named_parameters() if p.grad is None]


def test_centernet_deformable_neck_runs_on_cpu_and_feeds_centernet_head():
    from mmdet.models.dense_heads import CenterNetHead
    init_default_scope('mmdet')
    neck = MODEL_REGISTRIES['mmdet'].build(
        dict(type='DLAUpNeck', in_channels=WIDTHS, conv_cfg=DCN, **CENTERNET))
    neck.init_weights()
    offsets = [m.conv_offset for m in neck.modules() if hasattr(m, 'conv_offset')]
    assert len(offsets) == 2 * (1 + 2 + 3) + 2 * 2  # DLA-Up stages, then the last IDA-Up
    assert not any(o.weight.any() for o in offsets)
    head = CenterNetHead(in_channels=WIDTHS[0], feat_channels=8, num_classes=3)
    inputs = features(ceil_sizes(93, 131), batch=1)
    feats = neck(inputs)
    heatmaps, sizes, offsets_pred = head(feats)
    assert heatmaps[0].shape == (1, 3, 24, 33)
    sum(x[0].mean() for x in (heatmaps, sizes, offsets_pred)).backward()
    assert not [name for name, p in neck.named_parameters() if p.grad is None]


def test_builds_from_both_registries():
    for scope in ('mmdet', 'mmseg'):
        init_default_scope(scope)
        neck = MODEL_REGISTRIES[scope].build(
            dict(type='DLAUpNeck',
                 in_channels=WIDTHS,
                 out_mode='pyramid',
                 out_channels=16,
                 num_outs=5))
        assert isinstance(neck, DLAUpNeck) and neck.num_outs == 5


def test_dla34_parameter_counts():
    """CenterNet-DLA-34 neck (sum, 3x3 DCNv2) from its structure; paper and pyramid variants."""

    def conv_bn(cin, cout, k, deformable=False):
        offsets = cin * 27 * k * k + 27 if deformable else 0  # 3 * 3 * 3 offset/mask maps
        return cin * cout * k * k + 2 * cout + offsets

    def ida_sum(out, channels, factors, deformable):
        total = sum(out * (2 * f)**2 for f in factors[1:])  # depthwise deconvs, kernel 2f
        total += conv_bn(channels[0], out, 3, deformable) if channels[0] != out else 0
        total += sum(conv_bn(c, out, 3, deformable) for c in channels[1:])
        return total + (len(channels) - 1) * conv_bn(out, out, 3, deformable)

    def centernet_count(channels, deformable):
        total = 0
        for level in range(len(channels) - 2, -1, -1):
            merged = len(channels) - 1 - level
            total += ida_sum(channels[level], [channels[level]] + [channels[level + 1]] * merged,
                             [1] + [2] * merged, deformable)
        return total + ida_sum(channels[0], channels[:-1], [1, 2, 4], deformable)

    centernet = DLAUpNeck(DLA34, conv_cfg=DCN, **CENTERNET)
    assert num_params(centernet) == centernet_count(DLA34, True) == 3_938_672
    assert num_params(DLAUpNeck(DLA34, **CENTERNET)) == centernet_count(DLA34, False)
    paper = DLAUpNeck(DLA34)
    assert num_params(paper) == 2_403_584
    pyramid = DLAUpNeck(DLA34, out_mode='pyramid', out_channels=256, num_outs=5)
    assert num_params(pyramid) == num_params(paper.dla_up) + sum(c * 256 + 2 * 256 for c in DLA34)


@pytest.mark.parametrize('kwargs,argument', [
    (dict(out_mode='multi'), 'out_mode'),
    (dict(out_mode='pyramid'), 'out_channels'),
    (dict(out_mode='pyramid', out_channels=16, num_outs=3), 'num_outs'),
    (dict(num_outs=3), 'num_outs'),
    (dict(out_channels=0), 'out_channels'),
    (dict(in_channels=[8]), 'in_channels'),
    (dict(node_type='mean'), 'node_type'),
    (dict(upsample_mode='nearest'), 'upsample_mode'),
    (dict(projection_kernel_size=2), 'projection_kernel_size'),
    (dict(scales=[1, 2, 3, 6]), 'scales'),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DLAUpNeck(**{**dict(in_channels=WIDTHS), **kwargs})


def test_bad_inputs_are_reported():
    neck = DLAUpNeck(WIDTHS)
    with pytest.raises(ValueError, match='in_channels'):
        neck(features(widths=[8, 16, 24, 40]))
    with pytest.raises(ValueError, match='expected 4 maps'):
        neck(features()[:3])
