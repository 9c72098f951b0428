"""DLAUpHead: DLA-Up + classifier, mmseg loss/predict, odd sizes, registry, errors, DLA-34."""
import math

import pytest
import torch
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.decode_heads import DLAUpHead
from mmplug_agg.models.layers import DLAUp
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch

WIDTHS = [8, 16, 24, 32]
DLA34 = [16, 32, 64, 128, 256, 512]  # DLA-34 levels 0..5 (strides 1..32)
IMAGE = (333, 517)
BN = dict(type='BN', requires_grad=True)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmseg's registries resolve inside mmseg's scope; other tests may have left mmdet's."""
    init_default_scope('mmseg')


def backbone_levels(widths=(4, 6) + tuple(WIDTHS), image=IMAGE, batch=2, seed=0):
    """A DLA-like backbone output: levels 0..5 at strides 1..32, ceil-divided sizes."""
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, math.ceil(image[0] / 2**i), math.ceil(image[1] / 2**i),
                    generator=gen).requires_grad_() for i, c in enumerate(widths)
    ]


def head(**kwargs):
    return DLAUpHead(**{**dict(in_channels=WIDTHS, in_index=[2, 3, 4, 5], num_classes=5), **kwargs})


def num_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('node_type', ['concat', 'sum'])
def test_logits_are_the_classifier_on_dlaup_output(node_type):
    decoder = head(node_type=node_type).eval()
    assert decoder.channels == 8 and decoder.input_transform == 'multiple_select'
    assert decoder.dropout is None  # the paper uses none
    levels = backbone_levels()
    with torch.no_grad():
        logits = decoder(levels)
        expected = decoder.conv_seg(decoder.dla_up(levels[2:])[0])
    assert logits.shape == (2, 5, 84, 130)  # stride 4 of 333 x 517
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)


def test_output_stride_2():
    decoder = DLAUpHead(in_channels=[6] + WIDTHS,
                        in_index=[1, 2, 3, 4, 5],
                        num_classes=5,
                        upsample_mode='bilinear')
    with torch.no_grad():
        assert decoder(backbone_levels(batch=1)).shape == (1, 5, 167, 259)


@pytest.mark.parametrize('node_type,upsample_mode', [('concat', 'deconv'), ('sum', 'bilinear')])
def test_loss_predict_and_gradients_at_odd_sizes(node_type, upsample_mode):
    decoder = head(node_type=node_type, upsample_mode=upsample_mode, norm_cfg=BN)
    decoder.init_weights()
    levels = backbone_levels()
    batch = make_seg_batch(2, IMAGE, 5)
    losses = decoder.loss(levels, batch['data_samples'], train_cfg={})
    assert torch.isfinite(losses['loss_ce'])
    losses['loss_ce'].backward()
    assert not [name for name, p in decoder.named_parameters() if p.grad is None]
    assert all(x.grad is not None for x in levels[2:])
    decoder.eval()
    metas = [sample.metainfo for sample in batch['data_samples']]
    with torch.no_grad():
        logits = decoder.predict(backbone_levels(seed=1), metas, test_cfg={})
    assert logits.shape == (2, 5, *IMAGE)


def test_init_weights_keeps_the_bilinear_deconvs():
    decoder = head(init_cfg=[
        dict(type='Normal', std=0.01, override=dict(name='conv_seg')),
        dict(type='Kaiming', layer=['Conv2d', 'ConvTranspose2d'])
    ])
    decoder.init_weights()
    deconvs = [m for m in decoder.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(deconvs) == 6
    for deconv in deconvs:
        kernel = deconv.weight[0, 0]
        torch.testing.assert_close(kernel, torch.outer(kernel[0], kernel[0]) / kernel[0, 0])
        torch.testing.assert_close(kernel[0], torch.tensor([1., 3., 3., 1.]) / 16)


def test_builds_from_mmseg_registry():
    decoder = MODEL_REGISTRIES['mmseg'].build(
        dict(type='DLAUpHead',
             in_channels=WIDTHS,
             num_classes=5,
             node_type='sum',
             projection_kernel_size=3))
    assert isinstance(decoder, DLAUpHead) and decoder.in_index == [0, 1, 2, 3]
    assert 'DLAUpHead' not in MODEL_REGISTRIES['mmdet'].module_dict
    assert decoder.dla_up.stages[0].node_type == 'sum'


@pytest.mark.parametrize('first_level,expected', [(1, 2_310_400), (2, 2_225_920)],
                         ids=['stride2', 'stride4'])
def test_dla34_parameter_count(first_level, expected):
    """The head is DLA-Up (counted in test_ida_up from its formula) plus a 1x1 classifier."""
    channels = DLA34[first_level:]
    decoder = DLAUpHead(in_channels=channels, num_classes=19)
    assert num_params(decoder.dla_up) == num_params(DLAUp(channels)) == expected
    assert num_params(decoder) == expected + channels[0] * 19 + 19


@pytest.mark.parametrize('kwargs,argument', [
    (dict(channels=32), 'channels'),
    (dict(in_channels=[8]), 'in_channels'),
    (dict(in_channels=8), 'in_channels'),
    (dict(in_index=[0, 1]), 'in_index'),
    (dict(input_transform='resize_concat'), 'input_transform'),
    (dict(node_type='cat'), 'node_type'),
    (dict(upsample_mode='nearest'), 'upsample_mode'),
    (dict(projection_kernel_size=2), 'projection_kernel_size'),
    (dict(node_kernel_size=4), 'node_kernel_size'),
    (dict(scales=[1, 2, 4]), 'scales'),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        head(**kwargs)


def test_bad_inputs_name_the_argument():
    decoder = head()
    with pytest.raises(ValueError, match='in_index'):
        decoder(backbone_levels()[:4])
    with pytest.raises(ValueError, match='in_channels'):
        decoder(backbone_levels(widths=(4, 6, 8, 16, 24, 48)))
