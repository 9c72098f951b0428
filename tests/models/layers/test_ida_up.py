"""IDAUp / DLAUp: step-by-step references of both flavours, sizes, init, gradients, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.layers import DLAUp, IDAUp, bilinear_kernel

WIDTHS = [8, 16, 24, 32]
DLA34 = [16, 32, 64, 128, 256, 512]  # DLA-34 levels 0..5 (strides 1..32)
DCN = dict(type='DCNv2', deform_groups=1)


def ceil_sizes(height, width, strides):
    return [(math.ceil(height / s), math.ceil(width / s)) for s in strides]


# A 333 x 517 image: strides 4..32 are not exact halves of each other.
ODD_SIZES = ceil_sizes(333, 517, [4, 8, 16, 32])
EXACT_SIZES = ceil_sizes(128, 192, [4, 8, 16, 32])


def features(sizes, widths=WIDTHS, batch=2, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, h, w, generator=gen, dtype=dtype) for c, (h, w) in zip(widths, sizes)
    ]


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def randomise_(module, seed=0):
    """Random weights and BN statistics, so a reference cannot pass by symmetry."""
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


# Step-by-step references written from the papers' code, reading the module's weights.


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


def deconv_up(x, deconv, factor, size):
    """Depthwise transposed conv (kernel 2f, stride f, padding f // 2), cut to ``size``."""
    y = F.conv_transpose2d(x, deconv.weight, stride=factor, padding=factor // 2, groups=x.shape[1])
    assert y.shape[-2] >= size[0] and y.shape[-1] >= size[1]
    return y[..., :size[0], :size[1]]


def reference_ida_concat(ida, layers, out_channels, factors):
    """The paper's IDA-Up: project/upsample all, then x = node(cat(x, layer))."""
    size = layers[0].shape[-2:]
    layers = list(layers)
    for i, layer in enumerate(layers):
        if layer.shape[1] != out_channels:
            layer = conv_bn_relu(layer, ida.projections[i])
        else:
            assert isinstance(ida.projections[i], nn.Identity)
        if factors[i] != 1:
            layer = deconv_up(layer, ida.upsamples[i], factors[i], size)
        layers[i] = layer
    x, y = layers[0], []
    for i in range(1, len(layers)):
        x = conv_bn_relu(torch.cat([x, layers[i]], 1), ida.nodes[i - 1])
        y.append(x)
    return x, y


def reference_ida_sum(ida, layers, startp, endp, factors):
    """CenterNet's IDA-Up, in place: layers[i] = node(up(proj(layers[i])) + layers[i - 1])."""
    size = layers[startp].shape[-2:]
    for i in range(startp + 1, endp):
        k = i - startp
        projected = conv_bn_relu(layers[i], ida.projections[k])
        layers[i] = deconv_up(projected, ida.upsamples[k], factors[k], size)
        layers[i] = conv_bn_relu(layers[i] + layers[i - 1], ida.nodes[k - 1])


def reference_dlaup(dla_up, inputs, channels, node_type):
    """DLA-Up: IDA-Up from deep to shallow; CenterNet's output list (finest first)."""
    layers = list(inputs)
    channels = list(channels)
    scales = [2**i for i in range(len(layers))]
    out = [layers[-1]]
    for i in range(len(layers) - 1):
        j = -i - 2
        factors = [s // scales[j] for s in scales[j:]]
        assert factors == [1] + [2] * (i + 1)
        ida = dla_up.stages[i]
        if node_type == 'concat':
            x, y = reference_ida_concat(ida, layers[j:], channels[j], factors)
            layers[-i - 1:] = y
        else:
            reference_ida_sum(ida, layers, len(layers) - i - 2, len(layers), factors)
            x = layers[-1]
        out.insert(0, x)
        scales[j + 1:] = [scales[j]] * len(scales[j + 1:])
    return out


@pytest.mark.parametrize('node_type,projection_kernel_size,sizes', [
    ('concat', 1, ODD_SIZES),
    ('sum', 3, ODD_SIZES),
    ('concat', 1, EXACT_SIZES),
    ('sum', 3, EXACT_SIZES),
    ('concat', 3, EXACT_SIZES),
    ('sum', 1, EXACT_SIZES),
],
                         ids=[
                             'paper-333x517', 'centernet-333x517', 'paper-128x192',
                             'centernet-128x192', 'concat-3x3-128x192', 'sum-1x1-128x192'
                         ])
def test_dlaup_matches_step_by_step_reference(node_type, projection_kernel_size, sizes):
    dla_up = DLAUp(WIDTHS, node_type=node_type, projection_kernel_size=projection_kernel_size)
    randomise_(dla_up.double()).eval()
    inputs = features(sizes, batch=1, dtype=torch.float64)
    with torch.no_grad():
        outs = dla_up(inputs)
        expected = reference_dlaup(dla_up, inputs, WIDTHS, node_type)
    assert len(outs) == len(expected) == len(WIDTHS)
    for out, ref, channels, size in zip(outs, expected, WIDTHS, sizes):
        assert out.shape == (1, channels, *size)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    assert outs[-1] is inputs[-1]  # the coarsest entry is the raw coarsest input


def test_ida_up_matches_reference_with_factors_1_2_4():
    """CenterNet's last IDA-Up: three levels straight to the finest (factors 1, 2, 4)."""
    ida = IDAUp(8, [8, 16, 24], [1, 2, 4], node_type='sum', projection_kernel_size=3)
    randomise_(ida.double()).eval()
    inputs = features(ODD_SIZES[:3], widths=[8, 16, 24], batch=1, dtype=torch.float64)
    layers = list(inputs)
    with torch.no_grad():
        x, nodes = ida(inputs)
        reference_ida_sum(ida, layers, 0, 3, [1, 2, 4])
    torch.testing.assert_close(x, layers[-1], rtol=1e-10, atol=1e-10)
    for node, ref in zip(nodes, layers[1:]):
        torch.testing.assert_close(node, ref, rtol=1e-10, atol=1e-10)


def test_projections_follow_the_flavour():
    concat = IDAUp(16, [16, 32, 16], [1, 2, 2], node_type='concat')
    assert [type(p).__name__ for p in concat.projections] == ['Identity', 'ConvModule', 'Identity']
    assert concat.nodes[0].conv.in_channels == 32
    summed = IDAUp(16, [16, 32, 16], [1, 2, 2], node_type='sum')
    assert [type(p).__name__
            for p in summed.projections] == ['Identity', 'ConvModule', 'ConvModule']
    assert summed.nodes[0].conv.in_channels == 16
    # An input 0 of another width is projected in both flavours.
    for node_type in ('concat', 'sum'):
        ida = IDAUp(16, [8, 16], [1, 2], node_type=node_type)
        assert not isinstance(ida.projections[0], nn.Identity)


@pytest.mark.parametrize('factor', [2, 3, 4])
def test_bilinear_deconv_is_bilinear_interpolation_in_the_interior(factor):
    kernel = bilinear_kernel(2 * factor)
    assert kernel.shape == (2 * factor, 2 * factor)
    torch.testing.assert_close(kernel, kernel.t())
    ida = IDAUp(4, [4, 4], [1, factor])
    deconv = ida.upsamples[1]
    assert isinstance(deconv, nn.ConvTranspose2d) and deconv.groups == 4
    assert deconv.bias is None and deconv.weight.requires_grad
    torch.testing.assert_close(deconv.weight, kernel.expand(4, 1, -1, -1))

    x = torch.randn(2, 4, 7, 9)
    with torch.no_grad():
        up = deconv(x)
    expected = F.interpolate(x, scale_factor=factor, mode='bilinear', align_corners=False)
    # The deconv sees zeros beyond the border, interpolate repeats the edge.
    inner = (slice(None), slice(None), slice(factor, 7 * factor - factor),
             slice(factor, 9 * factor - factor))
    torch.testing.assert_close(up[inner], expected[inner], rtol=1e-5, atol=1e-5)

    # A constant coarse map, upsampled and cut to an odd finer size, stays constant inside.
    constant = torch.full((1, 4, 11, 17), 3.0)
    size = (11 * factor - 1, 17 * factor - 1)
    with torch.no_grad():
        out = ida._upsample(1, constant, size)
    assert out.shape[-2:] == size
    torch.testing.assert_close(out[..., factor:-factor, factor:-factor],
                               torch.full_like(out[..., factor:-factor, factor:-factor], 3.0))


@pytest.mark.parametrize('upsample_mode', ['deconv', 'bilinear'])
@pytest.mark.parametrize('node_type', ['concat', 'sum'])
def test_output_sizes(upsample_mode, node_type):
    cases = [
        ODD_SIZES,
        ceil_sizes(333, 517, [2, 4, 8, 16, 32]),
        [(83, 129), (41, 64), (20, 32), (10, 16)],  # floor-divided (a backbone without padding)
        EXACT_SIZES,
    ]
    for sizes in cases:
        widths = [4, 8, 12, 16, 20][:len(sizes)]
        dla_up = DLAUp(widths, node_type=node_type, upsample_mode=upsample_mode)
        with torch.no_grad():
            outs = dla_up(features(sizes, widths, batch=1))
        assert [tuple(out.shape) for out in outs] == [(1, c, *s) for c, s in zip(widths, sizes)]
    if upsample_mode == 'bilinear':
        assert not any(isinstance(m, nn.ConvTranspose2d) for m in dla_up.modules())


@pytest.mark.parametrize('upsample_mode', ['deconv', 'bilinear'])
@pytest.mark.parametrize('node_type', ['concat', 'sum'])
def test_every_parameter_and_input_gets_a_gradient(upsample_mode, node_type):
    dla_up = DLAUp(WIDTHS, node_type=node_type, upsample_mode=upsample_mode)
    inputs = [x.requires_grad_() for x in features(ODD_SIZES, batch=1)]
    outs = dla_up(inputs)
    sum(out.mean() for out in outs[:-1]).backward()
    missing = [name for name, p in dla_up.named_parameters() if p.grad is None]
    assert not missing
    assert all(x.grad is not None for x in inputs)


def test_only_the_finest_output_still_trains_every_parameter():
    """A segmentation head reads outs[0] only; DDP without find_unused_parameters needs all."""
    for node_type in ('concat', 'sum'):
        dla_up = DLAUp(WIDTHS, node_type=node_type)
        dla_up(features(EXACT_SIZES, batch=1))[0].mean().backward()
        assert all(p.grad is not None for p in dla_up.parameters())


def test_deformable_convs_run_on_cpu_and_start_as_plain_convs():
    ida = IDAUp(8, [8, 16, 16], [1, 2, 2],
                node_type='sum',
                projection_kernel_size=3,
                conv_cfg=DCN,
                init_cfg=dict(type='Xavier', layer='Conv2d'))
    deformable = [m for m in ida.modules() if hasattr(m, 'conv_offset')]
    assert len(deformable) == 4  # two projections, two nodes
    ida.init_weights()  # the Xavier init_cfg also hits the offset convs
    for module in deformable:
        assert not module.conv_offset.weight.any() and not module.conv_offset.bias.any()
    inputs = [x.requires_grad_() for x in features([(12, 17), (6, 9), (6, 9)], [8, 16, 16])]
    x, _ = ida(inputs)
    assert x.shape == (2, 8, 12, 17)
    x.mean().backward()
    assert all(p.grad is not None for p in ida.parameters())


def test_bilinear_init_survives_init_weights():
    conv_wide = dict(type='Kaiming', layer=['Conv2d', 'ConvTranspose2d'])

    class Parent(BaseModule):

        def __init__(self):
            super().__init__(
                init_cfg=[conv_wide,
                          dict(type='Normal', std=1.0, layer='ConvTranspose2d')])
            self.dla_up = DLAUp(WIDTHS, init_cfg=conv_wide)

    for module in (DLAUp(WIDTHS, init_cfg=conv_wide), Parent()):
        module.init_weights()
        deconvs = [m for m in module.modules() if isinstance(m, nn.ConvTranspose2d)]
        assert len(deconvs) == 6  # 1 + 2 + 3 merged inputs over the three stages
        for deconv in deconvs:
            torch.testing.assert_close(deconv.weight, bilinear_kernel(4).expand_as(deconv.weight))


def dlaup_params_by_formula(channels,
                            node_type='concat',
                            projection_kernel_size=1,
                            node_kernel_size=3):
    """DLA-Up's parameter count from the structure (BN: 2 per channel, bias-free convs)."""
    total = 0
    for level in range(len(channels) - 2, -1, -1):
        out, coarse = channels[level], channels[level + 1]
        merged = len(channels) - 1 - level  # inputs after the first, all `coarse` wide
        if node_type == 'sum' or coarse != out:
            total += merged * (projection_kernel_size**2 * coarse * out + 2 * out)
        total += merged * out * 4**2  # depthwise deconv, kernel 2 * 2
        node_in = 2 * out if node_type == 'concat' else out
        total += merged * (node_kernel_size**2 * node_in * out + 2 * out)
    return total


@pytest.mark.parametrize('first_level', [1, 2], ids=['stride2', 'stride4'])
def test_dla34_parameter_count(first_level):
    channels = DLA34[first_level:]
    paper = DLAUp(channels)
    centernet = DLAUp(channels, node_type='sum', projection_kernel_size=3)
    assert num_params(paper) == dlaup_params_by_formula(channels)
    assert num_params(centernet) == dlaup_params_by_formula(channels, 'sum', 3)
    expected = {1: (2_310_400, 3_113_216), 2: (2_225_920, 3_000_064)}[first_level]
    assert (num_params(paper), num_params(centernet)) == expected
    # Bilinear resizing drops exactly the deconvs.
    deconv = sum(16 * channels[level] * (len(channels) - 1 - level)
                 for level in range(len(channels) - 1))
    assert num_params(DLAUp(channels, upsample_mode='bilinear')) == expected[0] - deconv


@pytest.mark.parametrize('kwargs,argument', [
    (dict(node_type='max'), 'node_type'),
    (dict(upsample_mode='nearest'), 'upsample_mode'),
    (dict(projection_kernel_size=2), 'projection_kernel_size'),
    (dict(node_kernel_size=0), 'node_kernel_size'),
    (dict(in_channels=[8]), 'in_channels'),
    (dict(in_channels=[8, -16]), 'in_channels'),
    (dict(scales=[1, 2, 3, 6]), 'scales'),
    (dict(scales=[1, 2, 4]), 'scales'),
])
def test_bad_dlaup_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        DLAUp(**{**dict(in_channels=WIDTHS), **kwargs})


@pytest.mark.parametrize('kwargs,argument', [
    (dict(out_channels=0), 'out_channels'),
    (dict(up_factors=[1, 2]), 'up_factors'),
    (dict(up_factors=[1, 0, 2]), 'up_factors'),
    (dict(node_type='Concat'), "'concat', 'sum'"),
])
def test_bad_ida_up_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        IDAUp(**{**dict(out_channels=8, in_channels=[8, 16, 16], up_factors=[1, 2, 2]), **kwargs})


def test_bad_inputs_are_reported():
    dla_up = DLAUp(WIDTHS)
    with pytest.raises(ValueError, match='in_channels'):
        dla_up(features(ODD_SIZES, [8, 16, 24, 33]))
    with pytest.raises(ValueError, match='expected 4 maps'):
        dla_up(features(ODD_SIZES)[:3])
    # Levels that are not 2x apart do not fit the deconv factors.
    with pytest.raises(ValueError, match='up_factors'):
        dla_up(features([(40, 40), (40, 40), (20, 20), (10, 10)]))
    # With scales saying so, equal-sized levels (a dilated backbone) work.
    dilated = DLAUp(WIDTHS, scales=[1, 2, 4, 4])
    outs = dilated(features([(40, 40), (20, 20), (10, 10), (10, 10)]))
    assert [tuple(o.shape[-2:]) for o in outs] == [(40, 40), (20, 20), (10, 10), (10, 10)]
