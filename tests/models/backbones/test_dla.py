"""DLA backbone: timm parity for every arch, checkpoint conversion, strides, freezing, errors."""
import math

import pytest
import timm
import torch
from mmcv.ops import ModulatedDeformConv2dPack
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import DLA, DLA_ARCHS, convert_dla_state_dict
from mmplug_agg.models.backbones.dla import DLABottleneck, Tree
from mmplug_agg.registry import MODEL_REGISTRIES

ALL_LEVELS = (0, 1, 2, 3, 4, 5)
ODD_IMAGE = (333, 517)


def timm_reference(arch: str, seed: int = 0) -> nn.Module:
    """timm's DLA with random weights and random BN statistics (so BN mapping is tested)."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def grads_missing(model: nn.Module):
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize('arch', sorted(DLA_ARCHS))
def test_converted_timm_weights_give_timm_features(arch):
    reference = timm_reference(arch)
    features_only = timm.create_model(arch, pretrained=False, features_only=True,
                                      out_indices=ALL_LEVELS)
    features_only.load_state_dict(reference.state_dict(), strict=False)
    features_only.eval()

    converted, dropped = convert_dla_state_dict(reference.state_dict())
    assert dropped == ['fc.weight', 'fc.bias']
    ours = DLA(arch, out_indices=ALL_LEVELS)
    ours.load_state_dict(converted, strict=True)
    ours.eval()

    # Without the classifier the parameter counts are timm's.
    classifier = sum(p.numel() for p in reference.fc.parameters())
    assert (sum(p.numel() for p in ours.parameters())
            == sum(p.numel() for p in reference.parameters()) - classifier)

    image = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = features_only(image)
        got = ours(image)
    assert len(got) == 6
    for level, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, level
        assert (g - e).abs().max().item() < 1e-5, level


def official_style_state_dict(reference: nn.Module):
    """timm's weights plus what the official checkpoints add: the unused deep-tree projections."""
    state = dict(reference.state_dict())
    unused = []
    for level in range(2, 6):
        c_in, c_out = (reference.feature_info[i]['num_chs'] for i in (level - 1, level))
        if getattr(reference, f'level{level}').levels == 1 or c_in == c_out:
            continue
        prefix = f'level{level}.project'
        extra = {
            f'{prefix}.0.weight': torch.randn(c_out, c_in, 1, 1),
            f'{prefix}.1.weight': torch.ones(c_out),
            f'{prefix}.1.bias': torch.zeros(c_out),
            f'{prefix}.1.running_mean': torch.zeros(c_out),
            f'{prefix}.1.running_var': torch.ones(c_out),
        }
        state.update(extra)
        unused += list(extra)
    return state, unused


def test_official_checkpoint_drops_unused_projections_and_keeps_used_ones():
    reference = timm_reference('dla34')
    official, unused = official_style_state_dict(reference)
    assert unused, 'dla34 has deep trees whose width changes (levels 3 and 4)'
    converted, dropped = convert_dla_state_dict({f'module.{k}': v for k, v in official.items()})
    assert sorted(dropped) == sorted(unused + ['fc.weight', 'fc.bias'])
    ours = DLA('dla34')
    ours.load_state_dict(converted, strict=True)
    # The depth-1 trees' projections are used and renamed, not dropped.
    torch.testing.assert_close(ours.level2.project.conv.weight,
                               reference.level2.project[0].weight)
    torch.testing.assert_close(ours.level5.project.bn.running_var,
                               reference.level5.project[1].running_var)


def test_odd_input_gives_ceil_divided_sizes():
    model = DLA('dla34', out_indices=ALL_LEVELS).eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, *ODD_IMAGE))
    for level, feat in enumerate(feats):
        stride = 2**level
        assert feat.shape[-2:] == tuple(math.ceil(s / stride) for s in ODD_IMAGE)
        assert feat.shape[1] == DLA_ARCHS['dla34']['channels'][level]


@pytest.mark.parametrize('output_stride, dilation4, dilation5', [(16, 1, 2), (8, 2, 4)])
def test_dilated_variants_keep_the_stated_stride(output_stride, dilation4, dilation5):
    model = DLA('dla46_c', output_stride=output_stride, out_indices=(2, 3, 4, 5)).eval()
    with torch.no_grad():
        feats = model(torch.rand(1, 3, *ODD_IMAGE))
    expected_strides = [4, 8, min(16, output_stride), min(32, output_stride)]
    for feat, stride in zip(feats, expected_strides):
        assert feat.shape[-2:] == tuple(math.ceil(s / stride) for s in ODD_IMAGE)
    # The dilation reaches every 3x3 conv of the dilated trees.
    for level, dilation in ((4, dilation4), (5, dilation5)):
        dilations = {m.dilation for m in getattr(model, f'level{level}').modules()
                     if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)}
        assert dilations == {(dilation, dilation)}


def test_explicit_strides_and_dilations():
    model = DLA('dla34', strides=(1, 2, 2, 2, 1, 1), dilations=(1, 1, 1, 1, 2, 4))
    reference = DLA('dla34', output_stride=8)
    assert (model.strides, model.dilations) == (reference.strides, reference.dilations)


@pytest.mark.parametrize('arch', ['dla34', 'dla60x_c', 'dla102'])
def test_every_parameter_gets_a_gradient(arch):
    model = DLA(arch, out_indices=ALL_LEVELS).train()
    feats = model(torch.rand(2, 3, 40, 56))
    sum(f.mean() for f in feats).backward()
    assert grads_missing(model) == []
    # Deep trees own no projection at all (the official code's is dead weight).
    for level in range(2, 6):
        tree = getattr(model, f'level{level}')
        if tree.depth > 1:
            assert not hasattr(tree, 'project')


def test_frozen_stages_stay_frozen_and_norm_eval_holds():
    model = DLA('dla34', frozen_stages=2, norm_eval=True)
    model.train()
    for name, param in model.named_parameters():
        frozen = name.startswith(('base_layer', 'level0', 'level1', 'level2'))
        assert param.requires_grad != frozen, name
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert not module.training, name  # norm_eval keeps every BN in eval
    model = DLA('dla34', frozen_stages=1)
    model.train()
    assert not model.level1[0].bn.training and model.level2.tree1.bn1.training
    before = model.level0[0].bn.running_mean.clone()
    model(torch.rand(2, 3, 32, 32))
    torch.testing.assert_close(model.level0[0].bn.running_mean, before)


def test_with_cp_matches_plain_forward_and_backward():
    torch.manual_seed(0)
    plain = DLA('dla46_c')
    checkpointed = DLA('dla46_c', with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.rand(2, 3, 48, 48)
    outs = [sum(f.sum() for f in m(image.clone().requires_grad_())) for m in (plain, checkpointed)]
    for out in outs:
        out.backward()
    torch.testing.assert_close(outs[0], outs[1])
    for (name, p), q in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_cardinality_is_per_instance():
    wide = DLA('dla102x2')
    narrow = DLA('dla102x')
    assert wide.level5.tree1.conv2.groups == 64 and narrow.level5.tree1.conv2.groups == 32
    assert not hasattr(DLABottleneck, 'cardinality')
    # 64 groups double the inner width of the grouped bottleneck.
    assert wide.level5.tree1.conv2.in_channels == 2 * narrow.level5.tree1.conv2.in_channels


def test_custom_variant_and_residual_root():
    model = DLA(None, levels=(1, 1, 1, 3, 1, 1), channels=(8, 16, 32, 64, 96, 128),
                block='bottleneckx', cardinality=8, residual_root=True)
    assert isinstance(model.level3, Tree) and model.level3.depth == 3
    assert model.level3.tree2.tree2.residual_root
    feats = model(torch.rand(1, 3, 37, 41))
    assert [f.shape[1] for f in feats] == [32, 64, 96, 128]
    sum(f.sum() for f in feats).backward()
    assert grads_missing(model) == []


def test_deformable_convs_are_selectable():
    model = DLA('dla34', dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
                stage_with_dcn=(False, False, True, True))
    assert isinstance(model.level4.tree1.tree1.conv1, ModulatedDeformConv2dPack)
    assert not isinstance(model.level3.tree1.tree1.conv1, ModulatedDeformConv2dPack)
    feats = model(torch.rand(1, 3, 45, 45))
    sum(f.sum() for f in feats).backward()
    assert grads_missing(model) == []


def test_group_norm_and_pretrained_prefix(tmp_path):
    norm_cfg = dict(type='GN', num_groups=8, requires_grad=True)
    source = DLA('dla34', norm_cfg=norm_cfg)
    path = tmp_path / 'detector.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}, path)
    loaded = DLA('dla34', norm_cfg=norm_cfg,
                 init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    loaded.init_weights()
    for (name, p), q in zip(source.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


@pytest.mark.parametrize('toolbox', sorted(MODEL_REGISTRIES))
def test_builds_from_both_registries(toolbox):
    model = MODEL_REGISTRIES[toolbox].build(dict(type='DLA', arch='dla46x_c', out_indices=(3, 5)))
    assert model.out_channels == [64, 256]


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='dla35'), 'arch must be one of'),
    (dict(out_indices=(2, 6)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=6), 'frozen_stages'),
    (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(output_stride=4), 'output_stride must be one of'),
    (dict(output_stride=16, dilations=(1, 1, 1, 1, 1, 2)), 'output_stride'),
    (dict(block='resnet'), 'block must be one of'),
    (dict(cardinality=32), 'cardinality'),
    (dict(levels=(1, 1, 1, 2)), 'levels'),
    (dict(arch=None, levels=(1, 1, 1, 2, 2, 1)), 'arch=None needs'),
    (dict(root_kernel_size=2), 'root_kernel_size'),
    (dict(stage_with_dcn=(True, )), 'stage_with_dcn'),
])
def test_bad_arguments_fail_at_build_naming_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DLA(**kwargs)


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ValueError) as err:
        DLA('dla35')
    for arch in DLA_ARCHS:
        assert arch in str(err.value)
