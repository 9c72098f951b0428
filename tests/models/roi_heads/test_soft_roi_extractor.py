"""Soft RoI selection: every RoI pooled from every level, fused by learned maps."""
import pytest
import torch
from mmcv.ops import roi_align

from mmplug_agg.models.roi_heads import AllLevelRoIExtractor, SoftRoIExtractor

ROI_LAYER = dict(type='RoIAlign', output_size=7, sampling_ratio=0)
STRIDES = [4, 8, 16, 32]


def features(channels=8, height=96, width=128, batch=2):
    return [torch.rand(batch, channels, -(-height // s), -(-width // s)) for s in STRIDES]


def rois():
    return torch.tensor([[0., 4., 4., 60., 40.], [1., 0., 0., 127., 95.],
                         [1., 30., 20., 33., 22.],  # tiny
                         [0., 150., 120., 300., 200.]])  # outside the image


def per_roi_reference(extractor, feats, boxes):
    """The definition, one RoI and one level at a time."""
    outputs = []
    for box in boxes:
        pooled = torch.stack([
            roi_align(feat, box[None], (7, 7), 1 / stride, 0, 'avg', True)[0]
            for feat, stride in zip(feats, STRIDES)
        ])  # (levels, C, 7, 7)
        weights = extractor.level_weights(pooled.flatten(0, 1)[None])[0]
        weights = weights.sigmoid() if extractor.fusion == 'sigmoid' else weights.softmax(0)
        outputs.append((pooled * weights[:, None]).sum(0))
    return torch.stack(outputs)


@pytest.mark.parametrize('fusion', ['sigmoid', 'softmax'])
def test_matches_per_roi_definition(fusion):
    torch.manual_seed(0)
    extractor = SoftRoIExtractor(ROI_LAYER, 8, STRIDES, fusion=fusion)
    extractor.init_weights()
    feats, boxes = features(), rois()
    torch.testing.assert_close(extractor(feats, boxes), per_roi_reference(extractor, feats, boxes))


def test_even_weights_give_the_mean_of_levels():
    extractor = SoftRoIExtractor(ROI_LAYER, 8, STRIDES)
    final = extractor.level_weights[1].conv
    torch.nn.init.zeros_(final.weight)
    torch.nn.init.zeros_(final.bias)  # sigmoid(0) = 0.5 for every level
    feats, boxes = features(), rois()
    pooled = AllLevelRoIExtractor(ROI_LAYER, 8, STRIDES)(feats, boxes)
    assert pooled.shape == (4, 4, 8, 7, 7)
    torch.testing.assert_close(extractor(feats, boxes), 0.5 * pooled.sum(1))


def test_no_rois_and_gradients():
    extractor = SoftRoIExtractor(ROI_LAYER, 8, STRIDES)
    feats = [f.requires_grad_() for f in features()]
    out = extractor(feats, torch.zeros(0, 5))
    assert out.shape == (0, 8, 7, 7)
    out = extractor(feats, rois())
    out.sum().backward()
    assert all(p.grad is not None for p in extractor.parameters())
    assert all(f.grad is not None for f in feats)


def test_roi_scale_factor():
    extractor = SoftRoIExtractor(ROI_LAYER, 8, STRIDES)
    feats, boxes = features(), rois()
    scaled = extractor(feats, boxes, roi_scale_factor=1.5)
    expected = extractor(feats, extractor.roi_rescale(boxes, 1.5))
    torch.testing.assert_close(scaled, expected)


def test_unknown_fusion():
    with pytest.raises(ValueError, match='fusion'):
        SoftRoIExtractor(ROI_LAYER, 8, STRIDES, fusion='max')
