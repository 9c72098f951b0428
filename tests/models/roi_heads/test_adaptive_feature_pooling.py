"""PANet's adaptive feature pooling: per-level first layer, element-wise fusion, the rest."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS

NUM_ROIS, LEVELS, CHANNELS = 6, 4, 8


def build(cfg):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    module = MODELS.build(cfg)
    module.init_weights()
    return module


def box_head(**kwargs):
    cfg = dict(type='AdaptiveFeaturePoolingBBoxHead', num_shared_fcs=2, in_channels=CHANNELS,
               fc_out_channels=16, roi_feat_size=7, num_classes=3)
    return build(dict(cfg, **kwargs))


@pytest.mark.parametrize('fusion', ['max', 'sum'])
def test_box_head_equals_a_per_level_loop(fusion):
    head = box_head(fusion=fusion).eval()
    pooled = torch.randn(NUM_ROIS, LEVELS, CHANNELS, 7, 7)
    fused = None
    for level in range(LEVELS):
        fc = head.level_layers[level]
        out = F.relu(pooled[:, level].flatten(1) @ fc.weight.t() + fc.bias)
        fused = out if fused is None else (torch.maximum(fused, out) if fusion == 'max'
                                           else fused + out)
    hidden = F.relu(head.shared_fcs[0](fused))
    cls_score, bbox_pred = head(pooled)
    torch.testing.assert_close(cls_score, head.fc_cls(hidden))
    torch.testing.assert_close(bbox_pred, head.fc_reg(hidden))


def test_each_level_has_its_own_first_layer_unless_shared():
    separate = box_head()
    assert len(separate.level_layers) == LEVELS
    weights = [layer.weight for layer in separate.level_layers]
    assert not torch.equal(weights[0], weights[1])  # drawn independently by init_weights
    shared = box_head(share_first_layer=True)
    assert len(shared.level_layers) == 1
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    first = sum(p.numel() for p in shared.level_layers.parameters())
    assert count(separate) - count(shared) == (LEVELS - 1) * first
    # The shared form is mmdet's Shared2FCBBoxHead with max fusion after fc1.
    plain = build(dict(type='Shared2FCBBoxHead', in_channels=CHANNELS, fc_out_channels=16,
                       roi_feat_size=7, num_classes=3))
    assert count(plain) == count(shared)


def test_conv_first_head_fuses_after_the_first_conv():
    head = box_head(num_shared_convs=4, num_shared_fcs=1, conv_out_channels=CHANNELS,
                    norm_cfg=dict(type='GN', num_groups=4)).eval()
    pooled = torch.randn(NUM_ROIS, LEVELS, CHANNELS, 7, 7)
    fused = torch.stack([head.level_layers[i](pooled[:, i]) for i in range(LEVELS)]).amax(0)
    for conv in head.shared_convs:
        fused = conv(fused)
    hidden = F.relu(head.shared_fcs[0](fused.flatten(1)))
    torch.testing.assert_close(head(pooled)[0], head.fc_cls(hidden))
    assert len(head.shared_convs) == 3


@pytest.mark.parametrize('share', [False, True])
def test_mask_head_equals_a_per_level_loop_and_every_parameter_learns(share):
    head = build(dict(type='AdaptiveFeaturePoolingMaskHead', in_channels=CHANNELS,
                      conv_out_channels=CHANNELS, num_classes=3, share_first_layer=share))
    pooled = torch.randn(NUM_ROIS, LEVELS, CHANNELS, 14, 14)
    convs = head.level_convs if not share else [head.level_convs[0]] * LEVELS
    x = torch.stack([convs[i](pooled[:, i]) for i in range(LEVELS)]).amax(0)
    for conv in head.convs:
        x = conv(x)
    expected = head.conv_logits(head.relu(head.upsample(x)))
    out = head(pooled)
    torch.testing.assert_close(out, expected)
    assert out.shape == (NUM_ROIS, 3, 28, 28)
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_box_head_every_parameter_learns():
    head = box_head()
    cls_score, bbox_pred = head(torch.randn(NUM_ROIS, LEVELS, CHANNELS, 7, 7))
    (cls_score.sum() + bbox_pred.sum()).backward()
    assert all(p.grad is not None for p in head.parameters())


def test_bad_configs_and_inputs_are_refused_clearly():
    with pytest.raises(ValueError, match=r"fusion must be one of \('max', 'sum'\)"):
        box_head(fusion='mean')
    with pytest.raises(ValueError, match='num_shared_fcs >= 1'):
        box_head(num_shared_fcs=0)
    with pytest.raises(ValueError, match="type='AllLevelRoIExtractor'"):
        box_head()(torch.randn(NUM_ROIS, CHANNELS, 7, 7))
    with pytest.raises(ValueError, match='pools 3 levels, but num_levels is 4'):
        box_head()(torch.randn(NUM_ROIS, 3, CHANNELS, 7, 7))
    with pytest.raises(ValueError, match='num_convs must be >= 1'):
        build(dict(type='AdaptiveFeaturePoolingMaskHead', num_convs=0, in_channels=CHANNELS,
                   num_classes=3))
