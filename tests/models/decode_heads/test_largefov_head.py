"""LargeFOVHead: the fc6-fc7-fc8 computation, init, DeepLab-LargeFOV's parameter count,
loss/predict through mmseg (333x517), gradients, errors."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import VGG16
from mmplug_agg.models.decode_heads import LargeFOVHead
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def feature_map(batch=2, channels=16, size=(9, 13), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, *size, generator=gen)


@pytest.mark.parametrize('avg_pool', [True, False])
def test_output_is_fc6_fc7_fc8(avg_pool):
    head = LargeFOVHead(in_channels=16, channels=8, num_classes=5, avg_pool=avg_pool).eval()
    head.init_weights()
    x = feature_map()
    y = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True) if avg_pool else x
    y = F.relu(F.conv2d(y, head.fc6.conv.weight, head.fc6.conv.bias, padding=12, dilation=12))
    y = F.relu(F.conv2d(y, head.fc7.conv.weight, head.fc7.conv.bias))
    expected = F.conv2d(y, head.conv_seg.weight, head.conv_seg.bias)
    with torch.no_grad():
        torch.testing.assert_close(head([x]), expected)


def test_dropout_is_elementwise_after_fc6_and_fc7():
    head = LargeFOVHead(in_channels=16, channels=8, num_classes=5)
    assert type(head.drop6) is nn.Dropout and type(head.drop7) is nn.Dropout
    assert head.drop6.p == head.drop7.p == 0.5 and head.dropout is None
    head.train()
    torch.manual_seed(0)
    a, b = head([feature_map()]), head([feature_map()])
    assert not torch.equal(a, b)  # stochastic in training
    head.eval()
    assert torch.equal(head([feature_map()]), head([feature_map()]))


def test_largefov_defaults_init_and_paper_parameter_count():
    head = LargeFOVHead(in_channels=512, num_classes=21)
    head.init_weights()
    assert head.fc6.conv.kernel_size == (3, 3) and head.fc6.conv.dilation == (12, 12)
    assert head.fc6.conv.out_channels == head.fc7.conv.out_channels == 1024
    assert head.fc7.conv.kernel_size == (1, 1) and head.conv_seg.kernel_size == (1, 1)
    assert isinstance(head.pool, nn.AvgPool2d)
    # fc8: N(0, 0.01), zero bias (the released prototxt's gaussian filler).
    assert abs(head.conv_seg.weight.std().item() - 0.01) < 1e-3
    assert head.conv_seg.bias.abs().max() == 0
    head_params = sum(p.numel() for p in head.parameters())
    assert head_params == (9 * 512 * 1024 + 1024) + (1024 * 1024 + 1024) + (1024 * 21 + 21)
    # DeepLab v1, Table 2: DeepLab-CRF-LargeFOV has 20.5M parameters.
    total = head_params + sum(p.numel() for p in VGG16().parameters())
    assert total == 20_505_429 and round(total / 1e6, 1) == 20.5


def test_vgg16_largefov_loss_every_gradient_and_predict_at_odd_sizes():
    torch.manual_seed(0)
    model = MODEL_REGISTRIES['mmseg'].build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[104.008, 116.669, 122.675],
                               std=[1., 1., 1.], size_divisor=1),
        backbone=dict(type='VGG16'),
        decode_head=dict(type='LargeFOVHead', in_channels=512, num_classes=21),
        test_cfg=dict(mode='whole')))
    model.init_weights()
    model.train()
    data = model.data_preprocessor(make_seg_batch(1, (65, 97), 21), True)
    losses = model(**data, mode='loss')
    model.parse_losses(losses)[0].backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(make_seg_batch(1, (333, 517), 21, seed=1), False)
        (sample, ) = model(**data, mode='predict')
    assert sample.seg_logits.data.shape == (21, 333, 517)
    assert sample.pred_sem_seg.data.shape == (1, 333, 517)


def test_head_loss_and_predict_shapes():
    head = MODEL_REGISTRIES['mmseg'].build(
        dict(type='LargeFOVHead', in_channels=16, channels=8, num_classes=5, in_index=1))
    head.init_weights()
    batch = make_seg_batch(2, (333, 517), 5)
    x = feature_map(size=(42, 65)).requires_grad_()
    losses = head.loss([feature_map(channels=4), x], batch['data_samples'], train_cfg={})
    losses['loss_ce'].backward()
    assert not [n for n, p in head.named_parameters() if p.grad is None]
    metas = [sample.metainfo for sample in batch['data_samples']]
    with torch.no_grad():
        logits = head.eval().predict([None, x.detach()], metas, test_cfg={})
    assert logits.shape == (2, 5, 333, 517)


@pytest.mark.parametrize('kwargs, message', [
    (dict(in_channels=[16, 32]), 'in_channels must be one positive int'),
    (dict(dilation=0), 'dilation must be a positive int'),
    (dict(kernel_size=2), 'kernel_size must be a positive odd int'),
    (dict(dropout_ratio=1.0), r'dropout_ratio must be in \[0, 1\)'),
    (dict(input_transform='resize_concat'), 'input_transform'),
])
def test_bad_arguments_fail_at_build(kwargs, message):
    args = dict(in_channels=16, channels=8, num_classes=5)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LargeFOVHead(**args)
