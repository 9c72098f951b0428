"""MSCEncoderDecoder (DeepLab v2's multi-scale inputs, max fusion) against an explicit
computation: fused scores, prediction, the four losses; gradients; the CRF variant;
errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import ConfigDict
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch

NUM_CLASSES = 4
SHAPE = (65, 97)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def build(type='MSCEncoderDecoder', **kwargs):
    torch.manual_seed(0)
    cfg = ConfigDict(
        type=type,
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], size_divisor=1),
        # A small dilated ResNet (output stride 8) and v2's ASPP-L-style classifier.
        backbone=dict(type='ResNetV1c', depth=18, stem_channels=8, base_channels=8,
                      dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1)),
        decode_head=dict(type='DeepLabV2Head', in_channels=64, dilations=(1, 2, 3, 4),
                         num_classes=NUM_CLASSES),
        test_cfg=dict(mode='whole'),
        **kwargs)
    model = MODEL_REGISTRIES['mmseg'].build(cfg)
    model.init_weights()
    return model


def explicit_scores(model, inputs, scales):
    """Each scale through the shared network, resized to the largest scale's scores,
    element-wise max."""
    per_scale = []
    for s in scales:
        size = (math.ceil(inputs.shape[2] * s), math.ceil(inputs.shape[3] * s))
        x = inputs if s == 1 else F.interpolate(inputs, size=size, mode='bilinear',
                                                 align_corners=False)
        per_scale.append(model.decode_head.forward(model.backbone(x)))
    size = per_scale[max(range(len(scales)), key=lambda i: scales[i])].shape[-2:]
    resized = [F.interpolate(s, size=size, mode='bilinear', align_corners=False)
               for s in per_scale]
    fused = resized[0]
    for s in resized[1:]:
        fused = torch.maximum(fused, s)
    return per_scale, fused


@pytest.mark.parametrize('scales', [(1.0, 0.75, 0.5), (0.5, 1.25)])
def test_fused_scores_and_prediction_match_explicit_max_fusion(scales):
    model = build(scales=scales).eval()
    data = model.data_preprocessor(make_seg_batch(2, SHAPE, NUM_CLASSES), False)
    with torch.no_grad():
        _, expected = explicit_scores(model, data['inputs'], scales)
        torch.testing.assert_close(model(data['inputs'], mode='tensor'), expected)
        predictions = model(**data, mode='predict')
    expected_logits = F.interpolate(expected, size=SHAPE, mode='bilinear', align_corners=False)
    for sample, logits in zip(predictions, expected_logits):
        torch.testing.assert_close(sample.seg_logits.data, logits)
        assert sample.pred_sem_seg.data.shape == (1, *SHAPE)


def test_default_scales_and_losses_on_every_scale_and_the_fusion():
    model = build().train()
    assert model.scales == (1.0, 0.75, 0.5)
    data = model.data_preprocessor(make_seg_batch(2, SHAPE, NUM_CLASSES), True)
    torch.manual_seed(1)
    losses = model(**data, mode='loss')
    assert sorted(k for k in losses if 'loss' in k) == [
        'decode.loss_ce', 'decode_scale100.loss_ce', 'decode_scale50.loss_ce',
        'decode_scale75.loss_ce']
    torch.manual_seed(1)
    per_scale, fused = explicit_scores(model, data['inputs'], (1.0, 0.75, 0.5))
    head = model.decode_head
    expected = [head.loss_by_feat(s, data['data_samples'])['loss_ce']
                for s in [fused] + per_scale]
    total = model.parse_losses(losses)[0]
    torch.testing.assert_close(total, sum(expected))
    total.backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]

    fused_only = build(scale_losses=False).train()
    assert [k for k in fused_only(**data, mode='loss') if 'loss' in k] == ['decode.loss_ce']


def test_auxiliary_head_reads_the_largest_scale():
    model = build(auxiliary_head=dict(type='FCNHead', in_channels=32, in_index=2, channels=8,
                                      num_convs=1, num_classes=NUM_CLASSES)).train()
    data = model.data_preprocessor(make_seg_batch(1, SHAPE, NUM_CLASSES), True)
    losses = model(**data, mode='loss')
    assert 'aux.loss_ce' in losses
    model.parse_losses(losses)[0].backward()
    assert not [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


def test_crf_variant_refines_the_fused_scores():
    model = build(type='CRFMSCEncoderDecoder', crf=dict(num_iterations=2)).eval()
    plain = build(crf=None, type='CRFMSCEncoderDecoder').eval()
    plain.load_state_dict(model.state_dict())
    data = model.data_preprocessor(make_seg_batch(1, SHAPE, NUM_CLASSES), False)
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad():
        scores = plain.inference(data['inputs'], metas)
        refined = model.inference(data['inputs'], metas)
        expected = model.crf(scores, model.images_from_inputs(data['inputs'])).log()
    torch.testing.assert_close(refined, expected)
    assert not torch.allclose(refined.softmax(1), scores.softmax(1))


@pytest.mark.parametrize('scales', [(), (1.0, 1.0), (1.0, 0.0), (1.0, -0.5), (True, )])
def test_bad_scales_fail_at_build(scales):
    with pytest.raises(ValueError, match='scales must be distinct positive numbers'):
        build(scales=scales)
