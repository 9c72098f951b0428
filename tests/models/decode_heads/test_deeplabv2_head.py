"""DeepLabV2Head: the sum of atrous 3x3 classifiers, init, loss/predict, errors."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.decode_heads import DeepLabV2Head
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch

IMAGE = (123, 197)  # a stride-8 map of it is 16 x 25 (ceil-divided)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def feature_map(batch=2, channels=32, size=(16, 25), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=gen)


def test_scores_are_the_sum_of_the_atrous_classifiers():
    head = DeepLabV2Head(in_channels=32, num_classes=7, dilations=(1, 3, 6, 12))
    head.init_weights()
    x = feature_map()
    expected = sum(
        F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d)
        for conv, d in zip(head.classifiers, (1, 3, 6, 12)))
    torch.testing.assert_close(head([x]), expected)
    # Rates beyond the map size see only padding off-centre: still the map's size.
    assert head([feature_map(size=(5, 7))]).shape == (2, 7, 5, 7)


def test_aspp_l_defaults_and_init():
    head = DeepLabV2Head(in_channels=2048, num_classes=19)
    head.init_weights()
    assert [c.dilation for c in head.classifiers] == [(d, d) for d in (6, 12, 18, 24)]
    assert not hasattr(head, 'conv_seg') and head.dropout is None
    weights = torch.cat([c.weight.flatten() for c in head.classifiers])
    assert abs(weights.std().item() - 0.01) < 5e-4
    assert all(c.bias.abs().max() == 0 for c in head.classifiers)
    # 4 branches of 3x3x2048x19 weights + 19 biases (DeepLab v2 ResNet-101's classifier).
    assert sum(p.numel() for p in head.parameters()) == 4 * (9 * 2048 * 19 + 19)


def test_loss_predict_and_every_parameter_gets_a_gradient():
    head = MODEL_REGISTRIES['mmseg'].build(
        dict(type='DeepLabV2Head', in_channels=32, in_index=1, num_classes=5))
    head.init_weights()
    batch = make_seg_batch(2, IMAGE, 5)
    x = feature_map().requires_grad_()
    losses = head.loss([feature_map(channels=8), x], batch['data_samples'], train_cfg={})
    losses['loss_ce'].backward()
    assert not [n for n, p in head.named_parameters() if p.grad is None]
    assert x.grad is not None
    metas = [sample.metainfo for sample in batch['data_samples']]
    with torch.no_grad():
        logits = head.predict([None, feature_map(seed=1)], metas, test_cfg={})
    assert logits.shape == (2, 5, *IMAGE)


@pytest.mark.parametrize('kwargs, message', [
    (dict(channels=512), 'no hidden layer'),
    (dict(in_channels=[32, 64]), 'in_channels must be one positive int'),
    (dict(dilations=(6, 0)), 'dilations'),
    (dict(dilations=()), 'dilations'),
    (dict(input_transform='resize_concat'), 'input_transform'),
])
def test_bad_arguments_fail_at_build(kwargs, message):
    args = dict(in_channels=32, num_classes=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        DeepLabV2Head(**args)
