"""HRNetV2pNeck: parity with mmdet's HRFPN, exact level sizes, norms, checkpointing, errors."""
import math

import pytest
import torch
from mmdet.models.necks import HRFPN
from mmengine.config import Config
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.testing import tiny_hrnet_extra
from mmplug_agg.models.necks import HRNetV2pNeck
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing.cli import CONFIG_DIR

WIDTHS = [8, 16, 32, 64]
EXACT_SIZES = [(32, 48), (16, 24), (8, 12), (4, 6)]  # what HRFPN assumes
# Branches of a 333 x 517 image: stride-4 stem then stride-2 transitions, each
# ceil-dividing (84 x 130, 42 x 65, 21 x 33, 11 x 17).
ODD_IMAGE = (333, 517)
ODD_SIZES = [(math.ceil(ODD_IMAGE[0] / s), math.ceil(ODD_IMAGE[1] / s)) for s in (4, 8, 16, 32)]
BN = dict(type='BN', requires_grad=True)


def make_branches(sizes, widths=WIDTHS, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, h, w, generator=gen).requires_grad_()
        for c, (h, w) in zip(widths, sizes)
    ]


def backward_all(outputs):
    sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() for out in outputs).backward()


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
@pytest.mark.parametrize('project_first', [True, False])
def test_matches_hrfpn_with_copied_weights(pooling_type, project_first):
    torch.manual_seed(0)
    reference = HRFPN(in_channels=WIDTHS, out_channels=24, num_outs=5, pooling_type=pooling_type)
    reference.init_weights()
    neck = HRNetV2pNeck(in_channels=WIDTHS,
                        out_channels=24,
                        num_outs=5,
                        pooling_type=pooling_type,
                        project_first=project_first)
    assert neck.project_first == project_first
    neck.load_state_dict(reference.state_dict(), strict=True)  # same parameter names

    ours_in, ref_in = make_branches(EXACT_SIZES), make_branches(EXACT_SIZES)
    outs, ref_outs = neck(ours_in), reference(ref_in)
    assert len(outs) == len(ref_outs) == 5
    for out, ref in zip(outs, ref_outs):
        assert out.shape == ref.shape
        if project_first:  # same maths, other summation order: float32 rounding
            assert (out - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())
        else:
            assert (out - ref).abs().max() < 1e-5
    backward_all(outs)
    backward_all(ref_outs)
    # Gradients: float32 rounding only (project_first sums in another order).
    for ours, ref in zip(ours_in, ref_in):
        assert (ours.grad - ref.grad).abs().max() <= 1e-5 * ref.grad.abs().max()
    ref_params = dict(reference.named_parameters())
    for name, param in neck.named_parameters():
        ref_grad = ref_params[name].grad
        assert (param.grad - ref_grad).abs().max() <= 1e-5 * ref_grad.abs().max(), name


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
def test_floor_sizes_match_hrfpn_where_64_does_not_divide(pooling_type):
    """A 224 x 320 image (mmdet pads to 32): stride-4 map 56 x 80, P6 56 / 16 = 3.5 rows.

    HRFPN (and the official HRNet detection code) pools by 2**i with kernel = stride,
    which floors; ``pooling_size='floor'`` gives the same levels, ``'ceil'`` one more
    row at P6.
    """
    torch.manual_seed(0)
    sizes = [(56 // 2**i, 80 // 2**i) for i in range(4)]
    reference = HRFPN(in_channels=WIDTHS, out_channels=24, num_outs=5, pooling_type=pooling_type)
    reference.init_weights()
    floor = HRNetV2pNeck(in_channels=WIDTHS, out_channels=24, pooling_type=pooling_type,
                         pooling_size='floor', project_first=False)
    ceil = HRNetV2pNeck(in_channels=WIDTHS, out_channels=24, pooling_type=pooling_type,
                        pooling_size='ceil', project_first=False)
    floor.load_state_dict(reference.state_dict(), strict=True)
    ceil.load_state_dict(reference.state_dict(), strict=True)
    with torch.no_grad():
        branches = make_branches(sizes, batch=1)
        ref_outs, floor_outs, ceil_outs = reference(branches), floor(branches), ceil(branches)
    assert [tuple(o.shape[-2:]) for o in ref_outs] == [(56, 80), (28, 40), (14, 20), (7, 10),
                                                       (3, 5)]
    for out, ref in zip(floor_outs, ref_outs):
        assert out.shape == ref.shape
        assert (out - ref).abs().max() < 1e-5
    assert tuple(ceil_outs[4].shape[-2:]) == (4, 5)
    for out, ref in zip(ceil_outs[:4], ref_outs[:4]):
        assert (out - ref).abs().max() < 1e-5


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
def test_floor_sizes_on_odd_maps(pooling_type):
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=16, num_outs=7, pooling_type=pooling_type,
                        pooling_size='FLOOR')
    assert neck.pooling_size == 'floor'
    outs = neck(make_branches(ODD_SIZES, batch=1))
    h, w = ODD_SIZES[0]
    assert [tuple(out.shape[-2:]) for out in outs] == [(h // 2**i, w // 2**i) for i in range(7)]


def test_floor_level_smaller_than_one_pixel_is_one_error():
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=8, num_outs=5, pooling_size='floor')
    with pytest.raises(ValueError, match=r"pooling_size='floor' level 4 pools by 16.*\(12, 40\)"):
        neck(make_branches([(12, 40), (6, 20), (3, 10), (2, 5)], batch=1))


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
def test_odd_sizes_give_exact_ceil_halved_levels(pooling_type):
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=16, num_outs=7, pooling_type=pooling_type)
    branches = make_branches(ODD_SIZES, batch=1)
    outs = neck(branches)
    h, w = ODD_SIZES[0]
    assert [tuple(out.shape) for out in outs] == [(1, 16, math.ceil(h / 2**i), math.ceil(w / 2**i))
                                                  for i in range(7)]
    # Level i is the size i stride-2 convs give from the image's stride-4 map.
    assert tuple(outs[3].shape[-2:]) == (math.ceil(ODD_IMAGE[0] / 32), math.ceil(ODD_IMAGE[1] / 32))
    backward_all(outs)
    assert all(p.grad is not None for p in neck.parameters())
    assert all(b.grad is not None for b in branches)


def test_odd_image_through_an_hrnet_backbone():
    """mmseg's HRNet resizes to exact sizes, so a 333 x 517 image reaches the neck."""
    from mmseg.models.backbones import HRNet
    extra = tiny_hrnet_extra()
    backbone = HRNet(extra=extra)
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=16, norm_cfg=BN)
    with torch.no_grad():
        branches = backbone(torch.randn(1, 3, *ODD_IMAGE))
        assert [tuple(b.shape[-2:]) for b in branches] == ODD_SIZES
        outs = neck(branches)
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(ODD_IMAGE[0] / s), math.ceil(ODD_IMAGE[1] / s)) for s in (4, 8, 16, 32, 64)
    ]


def test_norm_is_applied_when_configured():
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=16, norm_cfg=BN)
    convs = [neck.reduction_conv, *neck.fpn_convs]
    assert all(isinstance(conv.norm, nn.BatchNorm2d) for conv in convs)
    assert all(conv.conv.bias is None for conv in convs)
    outs = neck(make_branches(ODD_SIZES))  # train mode: batch statistics, no activation
    for out in outs:
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(16), rtol=0, atol=1e-4)
        torch.testing.assert_close(out.var(dim=(0, 2, 3), unbiased=False),
                                   torch.ones(16),
                                   rtol=0,
                                   atol=1e-2)
    # mmdet's HRFPN takes the same norm_cfg and builds no norm layer at all.
    hrfpn = HRFPN(in_channels=WIDTHS, out_channels=16, norm_cfg=BN)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in hrfpn.modules())


def test_activation_and_checkpointing():
    torch.manual_seed(0)
    plain = HRNetV2pNeck(in_channels=WIDTHS, out_channels=16, act_cfg=dict(type='ReLU'))
    with_cp = HRNetV2pNeck(in_channels=WIDTHS,
                           out_channels=16,
                           act_cfg=dict(type='ReLU'),
                           with_cp=True)
    with_cp.load_state_dict(plain.state_dict())
    outs, cp_outs = plain(make_branches(ODD_SIZES)), with_cp(make_branches(ODD_SIZES))
    assert all((out >= 0).all() for out in outs)
    for out, cp_out in zip(outs, cp_outs):
        torch.testing.assert_close(out, cp_out)
    backward_all(outs)
    backward_all(cp_outs)
    cp_params = dict(with_cp.named_parameters())
    for name, param in plain.named_parameters():
        torch.testing.assert_close(param.grad, cp_params[name].grad)


def test_dla_like_levels():
    """Six levels with DLA-34's widths at strides 1 .. 32: any branch count works."""
    widths = [16, 32, 64, 128, 256, 512]
    sizes = [(63 // 2**i + 1, 95 // 2**i + 1) for i in range(6)]
    neck = HRNetV2pNeck(in_channels=widths, out_channels=8, num_outs=3, pooling_type='max')
    outs = neck(make_branches(sizes, widths=widths, batch=1))
    assert [tuple(o.shape[-2:]) for o in outs] == [(64, 96), (32, 48), (16, 24)]
    backward_all(outs)
    assert all(p.grad is not None for p in neck.parameters())


def test_registered_in_both_toolboxes():
    for toolbox in ('mmdet', 'mmseg'):
        neck = MODEL_REGISTRIES[toolbox].build(
            dict(type='HRNetV2pNeck', in_channels=WIDTHS, out_channels=8))
        assert isinstance(neck, HRNetV2pNeck)
    assert MODEL_REGISTRIES['mmdet'].get('HRFPN') is HRFPN


@pytest.mark.parametrize('kwargs, argument', [
    (dict(in_channels=32), 'in_channels'),
    (dict(in_channels=[]), 'in_channels'),
    (dict(pooling_type='median'), 'pooling_type'),
    (dict(pooling_size='round'), r"pooling_size must be one of \('floor', 'ceil'\), got 'round'"),
    (dict(pooling_size=None), 'pooling_size'),
    (dict(num_outs=0), 'num_outs'),
    (dict(out_channels=0), 'out_channels'),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        HRNetV2pNeck(**{**dict(in_channels=WIDTHS, out_channels=8), **kwargs})


def test_bad_inputs_name_the_argument():
    neck = HRNetV2pNeck(in_channels=WIDTHS, out_channels=8)
    with pytest.raises(ValueError, match=r'in_channels=\[8, 16, 32, 64\].*\[8, 16, 64, 32\]'):
        neck(make_branches(EXACT_SIZES, widths=[8, 16, 64, 32]))
    with pytest.raises(ValueError, match='in_channels.*3 inputs'):
        neck(make_branches(EXACT_SIZES[:3]))
    with pytest.raises(ValueError, match='inputs'):
        neck(make_branches(EXACT_SIZES[::-1]))


def test_config_keeps_the_mmdet_recipe(tmp_path):
    """Only the neck type changes; every other setting is mmdet's HRNetV2p-W32 config."""
    ours = Config.fromfile(str(CONFIG_DIR / 'hrnetv2p_w32_faster_rcnn_1x_coco.py')).to_dict()
    (tmp_path /
     'hrfpn.py').write_text("_base_ = 'mmdet::hrnet/faster-rcnn_hrnetv2p-w32-1x_coco.py'\n")
    theirs = Config.fromfile(str(tmp_path / 'hrfpn.py')).to_dict()
    neck, hrfpn = ours['model'].pop('neck'), theirs['model'].pop('neck')
    ours.pop('custom_imports')
    assert ours == theirs
    assert neck.pop('type') == 'HRNetV2pNeck' and hrfpn.pop('type') == 'HRFPN'
    assert {k: neck[k] for k in hrfpn} == hrfpn
    assert neck['norm_cfg'] is None and neck['act_cfg'] is None and neck['pooling_type'] == 'AVG'
    # HRFPN's (and the official HRNet-Object-Detection code's) level sizes.
    assert neck['pooling_size'] == 'floor'


class _FloorNeck(nn.Module):
    """Two branches from one input, so one exported graph takes any size."""

    def __init__(self, pooling_type: str) -> None:
        super().__init__()
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.neck = HRNetV2pNeck([4, 8], 8, num_outs=4, pooling_type=pooling_type,
                                 pooling_size='floor')

    def forward(self, x):
        return self.neck([x, self.down(x)])


@pytest.mark.parametrize('pooling_type', ['AVG', 'MAX'])
def test_floor_sizes_export_with_dynamic_sizes(tmp_path, pooling_type):
    """Strided pooling floors in ONNX as in eager mode, at sizes other than the traced one."""
    import onnxruntime as ort
    torch.manual_seed(0)
    module = _FloorNeck(pooling_type).eval()
    path = str(tmp_path / 'neck.onnx')
    with torch.no_grad():
        torch.onnx.export(module, (torch.randn(1, 4, 32, 48), ), path, dynamo=False,
                          opset_version=17, input_names=['x'],
                          dynamic_axes={'x': {2: 'h', 3: 'w'}})
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for size in [(32, 48), (37, 53), (50, 76), (9, 11)]:
        x = torch.randn(1, 4, *size)
        with torch.no_grad():
            expected = module(x)
        actual = session.run(None, {'x': x.numpy()})
        assert [a.shape for a in actual] == [tuple(e.shape) for e in expected]
        assert tuple(expected[3].shape[-2:]) == (size[0] // 8, size[1] // 8)
        for got, ref in zip(actual, expected):
            assert abs(got - ref.numpy()).max() < 1e-5 * max(1.0, float(ref.abs().max()))
