"""AugFPN neck: FPN exactly, plus residual feature augmentation, laterals in training."""
import math

import pytest
import torch
from mmdet.models.necks import FPN

from mmplug_agg.models.layers import PyramidFeatures
from mmplug_agg.models.necks import AugFPN, ResidualFeatureAugmentation

IN_CHANNELS = [8, 16, 32, 64]


def backbone_features(height, width, channels=IN_CHANNELS, batch=2):
    """Features as a stride-4..32 backbone gives them for an image of this size."""
    return [torch.rand(batch, c, math.ceil(height / s), math.ceil(width / s))
            for c, s in zip(channels, (4, 8, 16, 32))]


@pytest.mark.parametrize('extra', [dict(), dict(add_extra_convs='on_input'),
                                   dict(add_extra_convs='on_output', start_level=1,
                                        relu_before_extra_convs=True)])
def test_without_rfa_equals_mmdet_fpn(extra):
    torch.manual_seed(0)
    ours = AugFPN(IN_CHANNELS, 16, num_outs=5, with_rfa=False, **extra).eval()
    reference = FPN(IN_CHANNELS, 16, num_outs=5, **extra).eval()
    reference.load_state_dict(ours.state_dict())
    inputs = backbone_features(256, 192)
    for out, expected in zip(ours(inputs), reference(inputs)):
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_rfa_is_added_to_the_top_lateral():
    torch.manual_seed(0)
    neck = AugFPN(IN_CHANNELS, 16, num_outs=5).eval()
    inputs = backbone_features(256, 192)
    fpn = FPN(IN_CHANNELS, 16, num_outs=5).eval()
    fpn.load_state_dict(neck.state_dict(), strict=False)
    rfa = neck.rfa(inputs[-1])
    # the top backbone level has nothing above it: P5 = fpn_conv(M5 + RFA(C5))
    top_lateral = neck.lateral_convs[-1](inputs[-1]) + rfa
    torch.testing.assert_close(neck(inputs)[3], neck.fpn_convs[3](top_lateral))
    assert not torch.allclose(neck(inputs)[3], fpn(inputs)[3])


def test_training_output_carries_laterals_before_fusion():
    neck = AugFPN(IN_CHANNELS, 16, num_outs=5).train()
    inputs = backbone_features(128, 160)
    outs = neck(inputs)
    assert isinstance(outs, PyramidFeatures) and len(outs) == 5
    assert len(outs.laterals) == 4
    for conv, feat, lateral in zip(neck.lateral_convs, inputs, outs.laterals):
        torch.testing.assert_close(lateral, conv(feat))  # before RFA and top-down fusion
    assert type(neck.eval()(inputs)) is tuple


@pytest.mark.parametrize('size', [(333, 517), (97, 61), (32, 32)])
def test_odd_input_sizes(size):
    neck = AugFPN(IN_CHANNELS, 16, num_outs=5).eval()
    inputs = backbone_features(*size, batch=1)
    outs = neck(inputs)
    for out, feat in zip(outs, inputs):
        assert out.shape[-2:] == feat.shape[-2:]
    assert outs[4].shape[-2:] == tuple(math.ceil(s / 2) for s in inputs[-1].shape[-2:])


@pytest.mark.parametrize('fusion', ['sigmoid', 'softmax'])
def test_rfa_pools_each_side_to_at_least_one(fusion):
    rfa = ResidualFeatureAugmentation(8, 4, pool_ratios=(0.1, 0.2, 0.3), fusion=fusion)
    top = torch.rand(1, 8, 3, 7)  # 0.1 * 3 < 1: the pool must still keep one row
    assert rfa(top).shape == (1, 4, 3, 7)


def test_softmax_fusion_weights_sum_to_one():
    rfa = ResidualFeatureAugmentation(8, 4, fusion='softmax')
    with torch.no_grad():
        logits = rfa.fusion_weights(torch.rand(1, 12, 5, 5))
    assert torch.allclose(logits.softmax(dim=1).sum(dim=1), torch.ones(1, 5, 5))


def test_every_parameter_gets_a_gradient():
    neck = AugFPN(IN_CHANNELS, 16, num_outs=5, add_extra_convs='on_input').train()
    outs = neck(backbone_features(128, 96))
    sum(out.mean() for out in outs).backward()
    missing = [name for name, p in neck.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize('kwargs, argument', [
    (dict(pool_ratios=(0.1, 1.5)), 'pool_ratios'),
    (dict(pool_ratios=(0.0, 0.2)), 'pool_ratios'),
    (dict(pool_ratios=()), 'pool_ratios'),
    (dict(num_outs=3), 'num_outs'),
    (dict(rfa_fusion='max'), 'fusion'),
    (dict(start_level=4), 'start_level'),
])
def test_bad_config_names_the_argument(kwargs, argument):
    args = dict(in_channels=IN_CHANNELS, out_channels=16, num_outs=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        AugFPN(**args)


def test_wrong_number_of_inputs():
    neck = AugFPN(IN_CHANNELS, 16, num_outs=5)
    with pytest.raises(ValueError, match='in_channels'):
        neck(backbone_features(64, 64)[:3])
