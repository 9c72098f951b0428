"""The layers that make export possible: pooling sized in the graph, WS folding, RoI layers.

Each export form is checked against the layer it replaces in PyTorch, and the
necks' RFA and HRNetV2p pooling are exported with both torch exporters and run
with onnxruntime at sizes other than the traced one.
"""
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.conv_ws import ConvAWS2d, ConvWS2d
from mmcv.ops import RoIAlign
from mmcv.ops.saconv import SAConv2d
from torch import nn

from mmplug_agg.deployment import FoldedSAConv2d, NotFoldable, fold_weight_standardisation
from mmplug_agg.deployment import pooling
from mmplug_agg.deployment.roi import OnnxRoIAlign, OnnxSingleRoIExtractor, prepare_roi_layers
from mmplug_agg.models.necks.augfpn import ResidualFeatureAugmentation
from mmplug_agg.models.necks.hrnetv2p_neck import HRNetV2pNeck

ort = pytest.importorskip('onnxruntime')

SIZES = [(13, 17), (25, 38), (50, 76), (9, 31), (3, 2), (1, 1), (64, 64)]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exporting():
    """Run a module's export path in eager mode."""
    return mock.patch.object(pooling, 'is_exporting', return_value=True)


@pytest.mark.parametrize('ratio', [0.1, 0.2, 0.3, 0.25, 0.5, 1.0, 0.15, 0.4])
def test_ratio_as_fraction_reproduces_python_rounding(ratio):
    p, q = pooling.ratio_as_fraction(ratio)
    assert all((side * p) // q == int(side * ratio) for side in range(1, pooling.MAX_SIDE + 1))


def test_ratio_without_integer_form_is_refused():
    # int(90 * 0.7) == 62 in double precision: no p / q rounds like that everywhere.
    assert int(90 * 0.7) == 62
    with pytest.raises(ValueError, match='ratio 0.7 has no integer form'):
        pooling.ratio_as_fraction(0.7)


@pytest.mark.parametrize('size', SIZES)
def test_pooling_helpers_equal_adaptive_pooling(size):
    x = torch.randn(2, 3, *size)
    for out in [(1, 1), (max(1, size[0] // 3), max(1, size[1] // 2)), size,
                (-(-size[0] // 4), -(-size[1] // 4))]:
        torch.testing.assert_close(pooling.adaptive_avg_pool2d(x, out),
                                   F.adaptive_avg_pool2d(x, out), rtol=0, atol=1e-6)
    for factor in (2, 4, 8):
        out = (pooling.ceil_div(size[0], factor), pooling.ceil_div(size[1], factor))
        # Max pooling picks elements: equal, not close.
        assert torch.equal(pooling.adaptive_max_pool2d(x, out, factor + 1),
                           F.adaptive_max_pool2d(x, out))


def test_rfa_export_path_equals_eager_path():
    torch.manual_seed(0)
    rfa = ResidualFeatureAugmentation(8, 4).eval()
    for size in SIZES[:5]:
        x = torch.randn(1, 8, *size)
        with torch.no_grad():
            eager = rfa(x)
            with mock.patch('mmplug_agg.models.necks.augfpn.is_exporting', return_value=True):
                exported = rfa(x)
        torch.testing.assert_close(exported, eager, rtol=0, atol=1e-6)


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
def test_hrnetv2p_export_path_equals_eager_path(pooling_type):
    torch.manual_seed(0)
    neck = HRNetV2pNeck([4, 8], 8, num_outs=4, pooling_type=pooling_type).eval()
    for size in [(32, 48), (33, 47), (17, 29)]:
        inputs = [torch.randn(1, 4, *size), torch.randn(1, 8, (size[0] + 1) // 2,
                                                        (size[1] + 1) // 2)]
        with torch.no_grad():
            eager = neck(inputs)
            with mock.patch('mmplug_agg.models.necks.hrnetv2p_neck.is_exporting',
                            return_value=True):
                exported = neck(inputs)
        for a, b in zip(exported, eager):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


class _NeckPooling(nn.Module):
    """RFA and HRNetV2p (AVG and MAX pooling) behind one input, so one export covers them."""

    def __init__(self) -> None:
        super().__init__()
        self.rfa = ResidualFeatureAugmentation(4, 4)
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.avg = HRNetV2pNeck([4, 8], 8, num_outs=4, pooling_type='AVG')
        self.max = HRNetV2pNeck([4, 8], 8, num_outs=4, pooling_type='MAX')

    def forward(self, x):
        branches = [x, self.down(x)]
        return (self.rfa(x), ) + self.avg(branches) + self.max(branches)


def _export(module, x, path, exporter):
    if exporter == 'torchscript':
        torch.onnx.export(module, (x, ), path, dynamo=False, opset_version=17,
                          input_names=['x'], dynamic_axes={'x': {2: 'h', 3: 'w'}})
    else:
        dims = {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}
        torch.onnx.export(module, (x, ), dynamo=True, input_names=['x'],
                          dynamic_shapes=(dims, ), verbose=False).save(path)


@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
def test_neck_pooling_exports_with_dynamic_sizes(tmp_path, exporter):
    """Traced at 32x48; run at sizes whose pooled sizes do not divide (or are 1)."""
    torch.manual_seed(0)
    module = _NeckPooling().eval()
    path = str(tmp_path / 'necks.onnx')
    with torch.no_grad():
        _export(module, torch.randn(1, 4, 32, 48), path, exporter)
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for size in [(32, 48), (37, 53), (50, 76), (21, 19), (9, 11)]:
        x = torch.randn(1, 4, *size)
        with torch.no_grad():
            expected = module(x)
        actual = session.run(None, {'x': x.numpy()})
        assert len(actual) == len(expected) == 9
        for got, ref in zip(actual, expected):
            assert got.shape == tuple(ref.shape), size
            scale = max(1.0, float(ref.abs().max()))
            assert np.abs(got - ref.numpy()).max() / scale < 1e-5, size


def _conv_input():
    return torch.randn(2, 8, 23, 29)


@pytest.mark.parametrize('layer', [
    lambda: ConvAWS2d(8, 16, 3, padding=1, bias=True),
    lambda: ConvWS2d(8, 16, 3, stride=2, padding=2, dilation=2, groups=2),
])
def test_folding_weight_standardisation_gives_plain_convs(layer):
    torch.manual_seed(0)
    model = nn.Sequential(layer(), nn.ReLU())
    if isinstance(model[0], ConvAWS2d):  # as a loaded checkpoint would set them
        model[0].weight_gamma.uniform_(0.5, 2)
        model[0].weight_beta.uniform_(-0.1, 0.1)
    x = _conv_input()
    with torch.no_grad():
        expected = model(x)
        assert fold_weight_standardisation(model) == ['0']
        assert type(model[0]) is nn.Conv2d
        assert torch.equal(model(x), expected)


def test_folding_sac_without_deformable_conv():
    torch.manual_seed(0)
    sac = SAConv2d(8, 16, 3, padding=1, use_deform=False)
    for name in ('weight_diff', 'switch.weight', 'pre_context.weight', 'post_context.weight'):
        nn.init.normal_(sac.get_parameter(name), std=0.1)
    sac.weight_gamma.uniform_(0.5, 2)
    model = nn.Sequential(sac)
    x = _conv_input()
    with torch.no_grad():
        expected = model(x)
        fold_weight_standardisation(model)
        assert isinstance(model[0], FoldedSAConv2d)
        assert not any(isinstance(m, ConvAWS2d) for m in model.modules())
        assert model[0].conv_l.dilation == (3, 3) and model[0].conv_l.padding == (3, 3)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-6)


def test_folding_refuses_deformable_sac():
    model = nn.Sequential(ConvAWS2d(8, 8, 1), SAConv2d(8, 8, 3, padding=1, use_deform=True))
    with pytest.raises(NotFoldable, match=r'use_deform=True, first: 1\b'):
        fold_weight_standardisation(model)
    assert isinstance(model[0], ConvAWS2d), 'nothing may change when folding is refused'


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_onnx_roi_align_equals_mmcv(aligned, sampling_ratio):
    torch.manual_seed(0)
    feat = torch.randn(2, 4, 20, 27)
    boxes = torch.rand(40, 4) * torch.tensor([100., 70., 100., 70.])
    boxes = torch.cat([boxes[:, :2].minimum(boxes[:, 2:]), boxes[:, :2].maximum(boxes[:, 2:])],
                      dim=1)
    rois = torch.cat([torch.randint(0, 2, (40, 1)).float(), boxes], dim=1)
    layer = RoIAlign(7, spatial_scale=0.25, sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(OnnxRoIAlign(layer)(feat, rois), layer(feat, rois),
                               rtol=0, atol=1e-5)


def test_onnx_roi_align_refuses_max_pooling():
    with pytest.raises(ValueError, match="pool_mode='max'"):
        OnnxRoIAlign(RoIAlign(7, 0.25, pool_mode='max'))


def test_single_roi_extractor_without_indexing_is_exact():
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    torch.manual_seed(0)
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=2), 4,
                                   [4, 8, 16, 32])
    feats = tuple(torch.randn(1, 4, 256 // s, 320 // s) for s in (4, 8, 16, 32))
    sides = torch.logspace(0.5, 3.0, 30)  # every level gets RoIs (scale >= 448 for P5)
    rois = torch.stack([torch.zeros(30), sides / 4, sides / 5, sides * 1.2, sides], dim=1)
    levels = extractor.map_roi_levels(rois, 4)
    assert len(levels.unique()) == 4
    model = nn.ModuleDict(dict(extractor=extractor))
    expected = extractor(feats, rois)
    prepare_roi_layers(model)
    assert isinstance(model['extractor'], OnnxSingleRoIExtractor)
    assert isinstance(model['extractor'].extractor.roi_layers[0], OnnxRoIAlign)
    torch.testing.assert_close(model['extractor'](feats, rois), expected, rtol=0, atol=1e-5)
