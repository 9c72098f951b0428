"""RoIAlign as channels-last row gathers: mmcv's numbers, forward and backward."""
import pytest
import torch
from mmcv.ops import RoIAlign

from mmplug_agg.models.layers.multi_level_roi_align import roi_align_level, roi_align_levels
from mmplug_agg.models.roi_heads import AllLevelRoIExtractor, SoftRoIExtractor

STRIDES = [4, 8, 16, 32]


def random_rois(num, height, width, batch, generator):
    # corners up to 20 px outside the image, sides from under a pixel to half the image
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) * 1.1 - 20
    wh = torch.rand(num, 2, generator=generator) ** 2 * torch.tensor([width, height]) * 0.5
    index = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([index, xy, xy + wh + 0.2], dim=1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [1, 2, 3])
@pytest.mark.parametrize('stride,size', [(4, (13, 17)), (8, (5, 7)), (16, (1, 2)), (1, (3, 3))])
def test_equals_mmcv_forward_and_backward(aligned, sampling_ratio, stride, size):
    generator = torch.Generator().manual_seed(stride * 10 + sampling_ratio)
    height, width = size
    # float64 on both sides (mmcv's CPU kernel takes it): equal to rounding, not to
    # float32 summation order, so the sampling points, weights and borders are proven
    feat = torch.randn(2, 6, height, width, generator=generator, dtype=torch.float64)
    rois = random_rois(40, height * stride, width * stride, 2, generator).double()
    grad = torch.randn(40, 6, 7, 7, generator=generator, dtype=torch.float64)

    expected_feat = feat.clone().requires_grad_()
    expected = RoIAlign(7, 1 / stride, sampling_ratio, aligned=aligned)(expected_feat, rois)
    expected.backward(grad)
    got_feat = feat.clone().requires_grad_()
    got = roi_align_level(got_feat, rois, (7, 7), 1 / stride, sampling_ratio, aligned)
    got.backward(grad)

    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(got_feat.grad, expected_feat.grad, rtol=0, atol=1e-12)


def test_rectangular_output_and_roi_from_second_image():
    feat = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    rois = torch.tensor([[1., 0., 0., 8., 4.]])
    got = roi_align_level(feat, rois, (2, 4), 1.0, 2)
    expected = RoIAlign((2, 4), 1.0, 2)(feat, rois)
    torch.testing.assert_close(got, expected)
    assert got.min() >= 64  # pooled from the second image only


def test_adaptive_sampling_is_refused():
    with pytest.raises(ValueError, match='sampling_ratio > 0'):
        roi_align_level(torch.rand(1, 1, 4, 4), torch.zeros(1, 5), (7, 7), 1.0, 0)


def test_levels_are_stacked_in_order():
    generator = torch.Generator().manual_seed(0)
    feats = [torch.rand(2, 4, 64 // s, 96 // s, generator=generator) for s in STRIDES]
    rois = random_rois(10, 64, 96, 2, generator)
    got = roi_align_levels(feats, rois, (7, 7), [1 / s for s in STRIDES], 2)
    for level, (feat, stride) in enumerate(zip(feats, STRIDES)):
        torch.testing.assert_close(got[:, level], RoIAlign(7, 1 / stride, 2)(feat, rois),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize('extractor_type', [AllLevelRoIExtractor, SoftRoIExtractor])
def test_extractor_gathers_on_cpu_with_the_layers_numbers(extractor_type):
    torch.manual_seed(0)
    roi_layer = dict(type='RoIAlign', output_size=7, sampling_ratio=2)
    feats = [torch.rand(2, 8, 96 // s, 128 // s) for s in STRIDES]
    rois = random_rois(12, 96, 128, 2, torch.Generator().manual_seed(1))
    auto = extractor_type(roi_layer, 8, STRIDES)
    layers = extractor_type(roi_layer, 8, STRIDES, pooling_impl='roi_layer')
    layers.load_state_dict(auto.state_dict())
    assert auto._use_gather(feats[0]) and not layers._use_gather(feats[0])
    torch.testing.assert_close(auto(feats, rois), layers(feats, rois), rtol=0, atol=1e-5)


def test_adaptive_layers_keep_mmcv_and_forced_gather_says_why():
    adaptive = dict(type='RoIAlign', output_size=7, sampling_ratio=0)
    assert not AllLevelRoIExtractor(adaptive, 8, STRIDES)._use_gather(torch.rand(1))
    with pytest.raises(ValueError, match="pooling_impl='gather' needs"):
        AllLevelRoIExtractor(adaptive, 8, STRIDES, pooling_impl='gather')
    with pytest.raises(ValueError, match="pooling_impl must be one of"):
        SoftRoIExtractor(adaptive, 8, STRIDES, pooling_impl='fast')


def test_no_rois_gives_an_empty_batch_and_a_zero_gradient():
    feat = torch.rand(2, 4, 8, 8, requires_grad=True)
    pooled = roi_align_level(feat, torch.zeros(0, 5), (7, 7), 0.25, 2)
    assert pooled.shape == (0, 4, 7, 7)
    pooled.sum().backward()
    assert torch.equal(feat.grad, torch.zeros_like(feat))
