"""HRNetV2Head: parity with mmseg's FCNHead(resize_concat), modes, norms, odd sizes, errors."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.models.decode_heads import FCNHead
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.decode_heads import HRNetV2Head
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch, tiny_hrnet_extra
from mmplug_agg.testing.cli import CONFIG_DIR

WIDTHS = [8, 16, 32, 64]
# Branch sizes of a 171 x 259 image after HRNet's stride-4 stem and stride-2
# transitions (ceil-divided, so not exact halves of each other).
ODD_SIZES = [(43, 65), (22, 33), (11, 17), (6, 9)]
BN = dict(type='BN', requires_grad=True)


@pytest.fixture(autouse=True)
def mmseg_scope():
    """mmseg's registries resolve inside mmseg's scope; other tests may have left mmdet's."""
    init_default_scope('mmseg')


def make_branches(sizes=ODD_SIZES, widths=WIDTHS, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, h, w, generator=gen).requires_grad_()
        for c, (h, w) in zip(widths, sizes)
    ]


def fcn_reference(align_corners=False, kernel_size=1, **kwargs):
    return FCNHead(in_channels=WIDTHS,
                   in_index=(0, 1, 2, 3),
                   channels=sum(WIDTHS),
                   input_transform='resize_concat',
                   kernel_size=kernel_size,
                   num_convs=1,
                   concat_input=False,
                   dropout_ratio=-1,
                   num_classes=5,
                   norm_cfg=BN,
                   align_corners=align_corners,
                   **kwargs)


def run_loss(head, branches, seed=0):
    """Loss dict of one step on a batch labelled at 4x the branch-0 size."""
    h, w = branches[0].shape[-2:]
    batch = make_seg_batch(branches[0].shape[0], (4 * h - 1, 4 * w - 3), 5, seed=seed)
    return head.loss(branches, batch['data_samples'], train_cfg={})


def loss_gradients(head):
    """Gradients of the loss w.r.t. the branches and the parameters, in float64."""
    head = copy.deepcopy(head).double()
    branches = [b.detach().double().requires_grad_() for b in make_branches()]
    run_loss(head, branches)['loss_ce'].backward()
    grads = {f'inputs[{i}]': b.grad for i, b in enumerate(branches)}
    grads.update((name, p.grad) for name, p in head.named_parameters())
    return grads


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('project_first', [True, False])
def test_matches_fcn_head_with_copied_weights(align_corners, project_first):
    torch.manual_seed(0)
    reference = fcn_reference(align_corners)
    reference.init_weights()
    head = HRNetV2Head(in_channels=WIDTHS,
                       dropout_ratio=-1,
                       num_classes=5,
                       norm_cfg=BN,
                       align_corners=align_corners,
                       project_first=project_first)
    assert head.project_first == project_first
    head.load_state_dict(reference.state_dict(), strict=True)  # same parameter names

    losses, ref_losses = run_loss(head, make_branches()), run_loss(reference, make_branches())
    assert losses.keys() == ref_losses.keys()
    for key in losses:
        torch.testing.assert_close(losses[key], ref_losses[key], rtol=0, atol=1e-5)

    # Gradients in float64: identical maths. (In float32 the BN backward's
    # cancellation magnifies the rounding of project_first's other summation order.)
    grads, ref_grads = loss_gradients(head), loss_gradients(reference)
    for name, ref_grad in ref_grads.items():
        assert (grads[name] - ref_grad).abs().max() <= 1e-9 * ref_grad.abs().max(), name

    head.eval()
    reference.eval()
    with torch.no_grad():
        out, ref_out = head(make_branches(seed=1)), reference(make_branches(seed=1))
    assert out.shape == (2, 5, *ODD_SIZES[0])
    assert (out - ref_out).abs().max() < 1e-5


def test_kernel_size_3_matches_fcn_head():
    torch.manual_seed(0)
    reference = fcn_reference(kernel_size=3)
    head = HRNetV2Head(in_channels=WIDTHS,
                       kernel_size=3,
                       dropout_ratio=-1,
                       num_classes=5,
                       norm_cfg=BN)
    assert not head.project_first  # only a 1x1 conv can be applied before resizing
    head.load_state_dict(reference.state_dict(), strict=True)
    head.eval()
    reference.eval()
    with torch.no_grad():
        assert (head(make_branches()) - reference(make_branches())).abs().max() < 1e-5


def test_v1_uses_only_the_highest_resolution_branch():
    head = HRNetV2Head(in_channels=WIDTHS, mode='v1', num_classes=5, norm_cfg=BN)
    assert head.in_channels == [8] and head.in_index == [0] and head.channels == 8
    branches = make_branches()
    losses = run_loss(head, branches)
    losses['loss_ce'].backward()
    assert branches[0].grad is not None
    assert all(b.grad is None for b in branches[1:])
    assert all(p.grad is not None for p in head.parameters())
    # A backbone that returns only its first branch (multiscale_output=False).
    single = HRNetV2Head(in_channels=8, mode='v1', num_classes=5)
    assert single(branches[:1]).shape == (2, 5, *ODD_SIZES[0])


def test_v1_on_a_backbone_without_lower_outputs_leaves_no_parameter_unused():
    """v1 + HRNet(multiscale_output=False): every parameter gets a gradient (plain DDP)."""
    from mmseg.models.backbones import HRNet
    extra = tiny_hrnet_extra()
    backbone = HRNet(extra=extra, multiscale_output=False)
    head = HRNetV2Head(in_channels=WIDTHS, mode='v1', num_classes=5, norm_cfg=BN)
    branches = backbone(torch.randn(2, 3, 61, 93))
    assert len(branches) == 1
    run_loss(head, branches)['loss_ce'].backward()
    unused = [
        name for name, p in [*backbone.named_parameters(), *head.named_parameters()]
        if p.grad is None
    ]
    assert not unused


def test_norm_is_applied_when_configured():
    head = HRNetV2Head(in_channels=WIDTHS, num_classes=5, norm_cfg=BN, act_cfg=None)
    assert isinstance(head.convs[0].norm, nn.BatchNorm2d)
    assert head.convs[0].conv.bias is None
    feat = head._forward_feature(make_branches())  # train mode: batch statistics
    torch.testing.assert_close(feat.mean(dim=(0, 2, 3)),
                               torch.zeros(sum(WIDTHS)),
                               rtol=0,
                               atol=1e-4)
    torch.testing.assert_close(feat.var(dim=(0, 2, 3), unbiased=False),
                               torch.ones(sum(WIDTHS)),
                               rtol=0,
                               atol=1e-2)
    plain = HRNetV2Head(in_channels=WIDTHS, num_classes=5, norm_cfg=None)
    assert not plain.convs[0].with_norm and plain.convs[0].conv.bias is not None


def test_odd_sizes_loss_predict_and_gradients():
    head = HRNetV2Head(in_channels=WIDTHS, num_classes=5, norm_cfg=BN, dropout_ratio=0.1)
    head.init_weights()
    branches = make_branches()
    losses = run_loss(head, branches)
    assert torch.isfinite(losses['loss_ce'])
    losses['loss_ce'].backward()
    assert all(p.grad is not None for p in head.parameters())
    assert all(b.grad is not None for b in branches)
    head.eval()
    metas = [dict(img_shape=(171, 259), pad_shape=(171, 259))] * 2
    with torch.no_grad():
        logits = head.predict(make_branches(), metas, test_cfg={})
    assert logits.shape == (2, 5, 171, 259)


def test_builds_from_mmseg_registry():
    head = MODEL_REGISTRIES['mmseg'].build(
        dict(type='HRNetV2Head', in_channels=WIDTHS, num_classes=5))
    assert isinstance(head, HRNetV2Head) and head.channels == sum(WIDTHS)
    assert 'HRNetV2Head' not in MODEL_REGISTRIES['mmdet'].module_dict


@pytest.mark.parametrize('kwargs, argument', [
    (dict(mode='v3'), 'mode'),
    (dict(in_channels=18), 'in_channels'),
    (dict(in_channels=[18, 0]), 'in_channels'),
    (dict(in_index=(0, 1)), 'in_index'),
    (dict(kernel_size=2), 'kernel_size'),
    (dict(input_transform='resize_concat', num_convs=1), 'input_transform'),
])
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        HRNetV2Head(**{**dict(in_channels=WIDTHS, num_classes=5), **kwargs})


def test_bad_inputs_name_the_argument():
    head = HRNetV2Head(in_channels=WIDTHS, num_classes=5)
    wrong_widths = make_branches(widths=[8, 16, 32, 32])
    with pytest.raises(ValueError, match=r'in_channels=\[8, 16, 32, 64\].*\[8, 16, 32, 32\]'):
        head(wrong_widths)
    with pytest.raises(ValueError, match='in_index'):
        head(make_branches()[:3])
    growing = make_branches(sizes=[(11, 17), (22, 33), (6, 9), (3, 5)])
    with pytest.raises(ValueError, match='inputs'):
        head(growing)


@pytest.mark.parametrize('width', [18, 48])
def test_config_keeps_the_mmseg_recipe(width, tmp_path):
    """Only the head type changes; every other setting is mmseg's FCN-HRNet config."""
    ours = Config.fromfile(str(CONFIG_DIR / f'hrnetv2_w{width}_cityscapes_512x1024_80k.py'))
    (tmp_path / 'fcn.py'
     ).write_text(f"_base_ = 'mmseg::hrnet/fcn_hr{width}_4xb2-80k_cityscapes-512x1024.py'\n")
    theirs = Config.fromfile(str(tmp_path / 'fcn.py'))
    ours_dict, theirs_dict = ours.to_dict(), theirs.to_dict()
    head, fcn = ours_dict['model'].pop('decode_head'), theirs_dict['model'].pop('decode_head')
    ours_dict.pop('custom_imports')
    assert ours_dict == theirs_dict
    assert head.pop('type') == 'HRNetV2Head' and head.pop('mode') == 'v2'
    for key in ('type', 'input_transform', 'num_convs', 'concat_input'):
        fcn.pop(key)
    assert head == fcn
