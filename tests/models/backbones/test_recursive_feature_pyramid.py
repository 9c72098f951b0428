"""RecursiveFeaturePyramid: parity with mmdet's DetectoRS_ResNet + RFP, stage runners, gradients,
shared weights, init, freezing, bad configs, and a Faster R-CNN loss step."""
import copy
import os.path as osp
import re

import mmdet
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import DLA, RecursiveFeaturePyramid, build_stage_runner
from mmplug_agg.models.backbones.dla import _ResidualBlock
from mmplug_agg.models.layers import DetectoRSASPP
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_det_batch

MMDET = MODEL_REGISTRIES['mmdet']


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    # Small maps: a second thread buys nothing but synchronisation, and on a shared
    # machine every sync waits for a busy core (tens of times slower overall).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    """mmdet's types resolve in mmdet's scope; an earlier test may have left mmseg's."""
    init_default_scope('mmdet')


BN = dict(type='BN', requires_grad=True)


def resnet(depth=50, base=64, **kwargs):
    cfg = dict(depth=depth, num_stages=4, out_indices=(0, 1, 2, 3), frozen_stages=-1,
               norm_cfg=BN, norm_eval=False, style='pytorch', base_channels=base,
               stem_channels=base)
    cfg.update(kwargs)
    return cfg


def fpn(in_channels, width, num_outs=5, **kwargs):
    return dict(type='FPN', in_channels=list(in_channels), out_channels=width, num_outs=num_outs,
                **kwargs)


# A thin ResNet-18 (widths 16..128) for the tests that need no reference.
TINY_BACKBONE = dict(type='ResNet', **resnet(18, base=16))
TINY_NECK = fpn([16, 32, 64, 128], 32)
TINY = dict(backbone=TINY_BACKBONE, neck=TINY_NECK, aspp_out_channels=8)
HALF_DLA34 = dict(type='DLA', arch='dla34', channels=(8, 16, 32, 64, 128, 256))
TINY_SWIN = dict(type='SwinTransformer', embed_dims=16, depths=(2, 2, 2, 2),
                 num_heads=(1, 2, 2, 4), window_size=4, out_indices=(0, 1, 2, 3),
                 drop_path_rate=0.0)  # stochastic depth would make training runs differ


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def total_output(outputs) -> torch.Tensor:
    return sum(out.float().pow(2).mean() for out in outputs)


# ---------------------------------------------------------------- parity with mmdet's RFP


# DetectoRS's backbone: weight-standardised convs, SAC (deformable) in stages 1-3.
SAC = dict(conv_cfg=dict(type='ConvAWS'), sac=dict(type='SAC', use_deform=True),
           stage_with_sac=(False, True, True, True))
NO_SAC = dict(sac=None, stage_with_sac=(False, ) * 4)


def mmdet_detectors(rfp_steps=2, base=64, seed=1, sac=False):
    """mmdet's DetectoRS_ResNet (outputs the image) and RFP neck, with every weight random.

    BN affine parameters and statistics, and the layers RFP zero-initialises
    (the feedback convs ``rfp_conv`` and the gate ``rfp_weight``) are random too,
    so the parity check exercises the whole feedback path; with ``sac`` also
    SAC's switch, contexts, offsets and large-rate weight difference.
    """
    torch.manual_seed(seed)
    width = 4 * base  # the FPN width that keeps mmdet's 64-of-256 ASPP ratio
    res = dict(resnet(50, base=base), **(SAC if sac else NO_SAC))
    backbone = MMDET.build(dict(type='DetectoRS_ResNet', output_img=True, **res))
    neck = MMDET.build(
        dict(fpn([base * 4 * 2**i for i in range(4)], width), type='RFP', rfp_steps=rfp_steps,
             aspp_out_channels=width // 4, aspp_dilations=(1, 3, 6, 1),
             rfp_backbone=dict(type='DetectoRS_ResNet', rfp_inplanes=width, **res)))
    backbone.init_weights()
    neck.init_weights()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (backbone, neck):
            for name, layer in module.named_modules():
                if isinstance(layer, nn.BatchNorm2d):
                    layer.weight.copy_(torch.rand(layer.num_features, generator=gen) * 0.5 + 0.25)
                    layer.bias.copy_(torch.randn(layer.num_features, generator=gen) * 0.1)
                    layer.running_mean.copy_(torch.randn(layer.num_features, generator=gen) * 0.1)
                    layer.running_var.copy_(torch.rand(layer.num_features, generator=gen) + 0.5)
                elif isinstance(layer, nn.Conv2d) and layer.bias is not None:
                    # rfp_conv, rfp_weight, the ASPP, the FPN, SAC's switch, contexts and
                    # offsets: weights of unit gain, random biases.
                    fan_in = layer.weight[0].numel()
                    layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / fan_in**0.5)
                    layer.bias.copy_(torch.randn(layer.out_channels, generator=gen) * 0.1)
                if hasattr(layer, 'weight_diff'):
                    layer.weight_diff.copy_(
                        torch.randn(layer.weight_diff.shape, generator=gen) * 0.05)
    return backbone, neck


def ours_like(rfp_steps=2, base=64, sac=False, **kwargs) -> RecursiveFeaturePyramid:
    width = 4 * base
    backbone = (dict(type='DetectoRS_ResNet', **resnet(50, base=base), **SAC) if sac else dict(
        type='ResNet', **resnet(50, base=base)))
    return RecursiveFeaturePyramid(
        backbone=backbone,
        neck=fpn([base * 4 * 2**i for i in range(4)], width), rfp_steps=rfp_steps,
        aspp_out_channels=width // 4, **kwargs)


def our_name(owner: str, key: str, fed_stages) -> str:
    """Our parameter name for mmdet's ``key`` of the backbone or the RFP neck.

    The rfp_conv of stage s in copy c becomes ``feedback_convs.c.k`` (k: s's
    position among the fed stages); the rest keeps its name under our prefixes.
    """
    if owner == 'backbone':
        return f'backbone.{key}'
    if key.startswith(('lateral_convs.', 'fpn_convs.')):
        return f'neck.{key}'
    if key.startswith('rfp_modules.'):
        _, copy_index, rest = key.split('.', 2)
        match = re.fullmatch(r'layer(\d)\.0\.rfp_conv\.(weight|bias)', rest)
        if match:
            return f'feedback_convs.{copy_index}.{fed_stages.index(int(match[1]) - 1)}.{match[2]}'
        return f'rfp_backbones.{copy_index}.{rest}'
    for theirs, ours in (('rfp_aspp.', 'aspp.'), ('rfp_weight.', 'gate.')):
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    raise KeyError(key)


def load_mmdet_weights(ours: RecursiveFeaturePyramid, backbone: nn.Module, neck: nn.Module):
    fed_stages = [stage for _, stage in ours.feedback_paths]
    state = {our_name(owner, k, fed_stages): v
             for owner, module in (('backbone', backbone), ('neck', neck))
             for k, v in module.state_dict().items()}
    ours.load_state_dict(state, strict=True)


def test_parity_with_mmdet_detectors_rfp_resnet50():
    backbone, neck = mmdet_detectors()
    ours = ours_like()
    load_mmdet_weights(ours, backbone, neck)
    assert num_params(ours) == num_params(backbone) + num_params(neck) == 51_609_729
    for module in (ours, backbone, neck):
        module.eval()
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = neck(backbone(image))
        got = ours(image)
        # The feedback matters: without it (zero feedback convs) the output changes.
        for conv in ours.feedback_convs.modules():
            if isinstance(conv, nn.Conv2d):
                conv.weight.zero_()
                conv.bias.zero_()
        without_feedback = ours(image)
    assert len(got) == len(expected) == 5
    for g, e, w in zip(got, expected, without_feedback):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() < 1e-5
        assert (w - e).abs().max().item() > 1e-2


@pytest.mark.parametrize('rfp_steps', [2, 3])
def test_parity_in_training_mode_outputs_and_gradients(rfp_steps):
    """Thin ResNet-50s (base width 16): batch-statistics BN, and every gradient equal."""
    backbone, neck = mmdet_detectors(rfp_steps=rfp_steps, base=16, seed=rfp_steps)
    ours = ours_like(rfp_steps=rfp_steps, base=16)
    load_mmdet_weights(ours, backbone, neck)
    assert num_params(ours) == num_params(backbone) + num_params(neck)
    for module in (ours, backbone, neck):
        module.train()
    image = torch.randn(2, 3, 64, 96)
    expected = neck(backbone(image))
    got = ours(image)
    assert len(got) == len(expected) == 5
    for g, e in zip(got, expected):
        assert (g - e).abs().max().item() < 1e-5
    total_output(expected).backward()
    total_output(got).backward()
    fed_stages = [stage for _, stage in ours.feedback_paths]
    ours_params = dict(ours.named_parameters())
    for owner, module in (('backbone', backbone), ('neck', neck)):
        for name, param in module.named_parameters():
            ours_grad = ours_params[our_name(owner, name, fed_stages)].grad
            assert ours_grad is not None and param.grad is not None, name
            scale = max(1.0, param.grad.abs().max().item())
            assert (ours_grad - param.grad).abs().max().item() < 1e-5 * scale, name


def test_parity_with_mmdet_detectors_rfp_and_sac():
    """The full DetectoRS backbone: RFP around DetectoRS_ResNet with SAC and ConvAWS."""
    backbone, neck = mmdet_detectors(base=16, seed=3, sac=True)
    ours = ours_like(base=16, sac=True)
    load_mmdet_weights(ours, backbone, neck)
    assert num_params(ours) == num_params(backbone) + num_params(neck)
    sacs = [m for m in ours.modules() if type(m).__name__ == 'SAConv2d']
    assert len(sacs) == 2 * (4 + 6 + 3)  # conv2 of every block of stages 1-3, in both passes
    for module in (ours, backbone, neck):
        module.eval()
    image = torch.randn(1, 3, 96, 128)  # SAC's reflect padding needs stride-32 maps >= 3 px
    with torch.no_grad():
        expected = neck(backbone(image))
        got = ours(image)
    for g, e in zip(got, expected):
        assert (g - e).abs().max().item() < 1e-5


# ---------------------------------------------------------------- stage runners

RUNNER_BACKBONES = {
    'mmdet ResNet-18': dict(type='ResNet', **resnet(18, base=16)),
    'mmdet ResNetV1d-50 with_cp': dict(type='ResNetV1d', **resnet(50, base=16, with_cp=True)),
    'mmdet ResNeXt-50 4x4d': dict(type='ResNeXt', groups=4, base_width=4, **resnet(50, base=16)),
    'mmdet ResNet-50 + ContextBlock plugins': dict(
        type='ResNet', **resnet(50, base=16, plugins=[
            dict(cfg=dict(type='ContextBlock', ratio=0.25), stages=(False, True, True, True),
                 position='after_conv3')])),
    'mmseg ResNetV1c-18': dict(type='mmseg.ResNetV1c', **resnet(18, base=16)),
    'DLA-34 half width': dict(HALF_DLA34, out_indices=(1, 2, 3, 4, 5)),
    'mmdet Res2Net-50 26w4s with_cp': dict(type='Res2Net', scales=4, base_width=26,
                                            **resnet(50, base=16, with_cp=True)),
    'mmdet DetectoRS_ResNet-50 SAC': dict(type='DetectoRS_ResNet', **resnet(50, base=16), **SAC),
    'mmdet DetectoRS_ResNeXt-50 4x4d SAC': dict(type='DetectoRS_ResNeXt', groups=4, base_width=4,
                                                **resnet(50, base=16), **SAC),
    'mmdet ResNet-50 SAC through dcn': dict(
        type='ResNet', dcn=dict(type='SAC', use_deform=True),
        stage_with_dcn=(False, True, True, True), **resnet(50, base=16)),
    'mmdet Swin': dict(TINY_SWIN, with_cp=True),
    'mmseg Swin': dict(TINY_SWIN, type='mmseg.SwinTransformer', out_indices=(1, 3)),
}


# mmdet's blocks call checkpoint without use_reentrant, which torch warns about.
@pytest.mark.filterwarnings('ignore:torch.utils.checkpoint')
@pytest.mark.parametrize('name', list(RUNNER_BACKBONES))
def test_runner_reproduces_the_backbone_forward(name):
    torch.manual_seed(0)
    backbone = MMDET.build(RUNNER_BACKBONES[name])
    backbone.init_weights()
    runner = build_stage_runner(backbone)
    # Odd-sized; SAC's reflect padding needs stride-32 maps of at least 3 pixels.
    image = torch.randn(1, 3, 99, 131)
    # Training mode with grads, so that with_cp really checkpoints.
    image.requires_grad_(True)
    expected = backbone(image)
    assert len(runner.out_indices) == len(expected)
    # Zero feedback goes through the re-implemented first blocks and changes nothing.
    zeros = {stage: torch.zeros_like(out) for stage, out in zip(runner.out_indices, expected)
             if stage in runner.feedback_stages}
    assert zeros
    for got in (runner.forward(image), runner.forward(image, zeros)):
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            assert (g - e).abs().max().item() < 1e-5
    # stage_channels are the widths the stages really give.
    for index, feat in zip(runner.out_indices, expected):
        assert feat.shape[1] == runner.stage_channels[index]


def test_resnet_feedback_enters_the_first_block_before_its_relu():
    backbone = MMDET.build(TINY_BACKBONE)
    backbone.eval()  # mmdet's ResNet.train() returns None, so no chaining
    runner = build_stage_runner(backbone)
    x = torch.randn(1, 16, 12, 16)
    feedback = torch.randn(1, 32, 6, 8)
    first, second = backbone.layer2[0], backbone.layer2[1]
    with torch.no_grad():
        pre_activation = first.norm2(first.conv2(first.relu(first.norm1(first.conv1(x)))))
        pre_activation = pre_activation + first.downsample(x)
        expected = second(torch.relu(pre_activation + feedback))
        got = runner.run_stage(1, x, feedback)
    torch.testing.assert_close(got, expected)


def test_dla_feedback_is_added_to_the_first_blocks_shortcut():
    dla = DLA(**{k: v for k, v in HALF_DLA34.items() if k != 'type'}).eval()
    runner = build_stage_runner(dla)
    assert runner.feedback_stages == frozenset({2, 3, 4, 5})
    for level in (2, 3):  # a depth-1 and a depth-2 tree
        block = getattr(dla, f'level{level}')
        while not isinstance(block, _ResidualBlock):
            block = block.tree1
        seen = {}
        hook = block.register_forward_hook(
            lambda module, args, out: seen.update(x=args[0], shortcut=args[1], out=out))
        x = torch.randn(1, dla.channels[level - 1], 13, 17)
        feedback = torch.randn(1, dla.channels[level], 7, 9)
        with torch.no_grad():
            plain = runner.run_stage(level, x)
            plain_inputs = dict(seen)
            fed = runner.run_stage(level, x, feedback)
        hook.remove()
        expected = torch.relu(
            block.residual(plain_inputs['x']) + plain_inputs['shortcut'] + feedback)
        torch.testing.assert_close(seen['out'], expected)
        assert (fed - plain).abs().max() > 1e-3


def test_swin_feedback_joins_the_residual_stream_after_the_first_block():
    swin = MMDET.build(TINY_SWIN)
    swin.eval()  # Swin's train() returns None
    runner = build_stage_runner(swin)
    assert runner.stage_channels == (16, 32, 64, 128)
    stage = swin.stages[1]
    tokens, hw_shape = torch.randn(1, 13 * 17, 32), (13, 17)
    feedback = torch.randn(1, 32, 13, 17)
    with torch.no_grad():
        x = stage.blocks[0](tokens, hw_shape) + feedback.flatten(2).transpose(1, 2)
        x = stage.blocks[1](x, hw_shape)
        merged, merged_hw_shape = stage.downsample(x, hw_shape)
        got = runner.run_stage(1, (tokens, hw_shape, None, None), feedback)
    assert got[1] == merged_hw_shape == (7, 9) and got[3] == hw_shape
    torch.testing.assert_close(got[0], merged)
    torch.testing.assert_close(got[2], x)
    out = runner.stage_output(1, got)
    assert out.shape == (1, 32, 13, 17)


# ---------------------------------------------------------------- behaviour


def grads_missing(model: nn.Module):
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize('share', [False, True])
def test_every_parameter_gets_a_gradient_and_zero_inits_start_learning(share):
    torch.manual_seed(0)
    model = RecursiveFeaturePyramid(**TINY, share_backbone_weights=share)
    model.init_weights()
    model.train()
    zero_inits = [model.gate, *[c for c in model.feedback_convs.modules()
                                if isinstance(c, nn.Conv2d)]]
    assert all(c.weight.abs().sum() == 0 and c.bias.abs().sum() == 0 for c in zero_inits)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    image = torch.randn(2, 3, 64, 96)
    total_output(model(image)).backward()
    assert not grads_missing(model)
    optimizer.step()
    optimizer.zero_grad()
    # After one step the feedback convs are non-zero, so the feedback path carries
    # signal and every parameter (ASPP included) gets a non-zero gradient.
    feedback_convs = zero_inits[1:]
    assert all(c.weight.abs().sum() > 0 for c in feedback_convs)
    if share:
        # With one backbone and zero feedback the second pass repeats the first,
        # so the gate (which mixes two equal pyramids) has a zero gradient at first.
        assert model.gate.weight.abs().sum() == 0
    else:
        assert model.gate.weight.abs().sum() > 0
    total_output(model(image)).backward()
    assert not grads_missing(model)
    zero_grads = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero_grads


def test_shared_weights_adds_only_aspp_feedback_convs_and_gate():
    shared = RecursiveFeaturePyramid(**TINY, rfp_steps=3, share_backbone_weights=True)
    separate = RecursiveFeaturePyramid(**TINY, rfp_steps=3)
    backbone = num_params(MMDET.build(TINY_BACKBONE))
    neck = num_params(MMDET.build(TINY_NECK))
    aspp = num_params(DetectoRSASPP(32, 8))
    feedback_convs = sum(32 * c + c for c in (32, 64, 128))  # stages 1-3 of the thin ResNet-18
    gate = 32 + 1
    assert num_params(shared) == backbone + neck + aspp + feedback_convs + gate
    assert len(shared.rfp_backbones) == 0 and len(shared.feedback_convs) == 1
    assert num_params(separate) == 3 * backbone + neck + aspp + 2 * feedback_convs + gate


def test_shared_weights_equal_separate_copies_with_equal_weights():
    """Starting later passes from the first pass's un-fed stages changes nothing."""
    torch.manual_seed(0)
    shared = RecursiveFeaturePyramid(**TINY, rfp_steps=3, share_backbone_weights=True).eval()
    separate = RecursiveFeaturePyramid(**TINY, rfp_steps=3).eval()
    with torch.no_grad():
        for conv in [shared.gate, *shared.feedback_convs.modules()]:
            if isinstance(conv, nn.Conv2d):
                conv.weight.normal_(0, 0.1)
                conv.bias.normal_(0, 0.1)
        state = shared.state_dict()
        for step in range(2):
            state.update({f'rfp_backbones.{step}.{k}': v
                          for k, v in shared.backbone.state_dict().items()})
            state.update({f'feedback_convs.{step}.{k}': v
                          for k, v in shared.feedback_convs[0].state_dict().items()})
        separate.load_state_dict(state, strict=True)
        image = torch.randn(1, 3, 64, 96)
        for s, p in zip(shared(image), separate(image)):
            torch.testing.assert_close(s, p)


RESNET_WIDTHS = [64, 128, 256, 512]
TWO_PASS_BACKBONES = {
    'ResNeXt': (dict(type='ResNeXt', groups=4, base_width=4, **resnet(50, base=16)),
                RESNET_WIDTHS, [1, 2, 3]),
    'Res2Net': (dict(type='Res2Net', **resnet(50, base=16)), RESNET_WIDTHS, [1, 2, 3]),
    'DetectoRS_ResNet SAC': (dict(type='DetectoRS_ResNet', **resnet(50, base=16), **SAC),
                             RESNET_WIDTHS, [1, 2, 3]),
    'Swin': (TINY_SWIN, [16, 32, 64, 128], [1, 2, 3]),
    'DLA SAC through dcn': (dict(HALF_DLA34, out_indices=(2, 3, 4, 5),
                                 dcn=dict(type='SAC', use_deform=True),
                                 stage_with_dcn=(False, False, True, True)),
                            [32, 64, 128, 256], [3, 4, 5]),
}


@pytest.mark.parametrize('name', list(TWO_PASS_BACKBONES))
def test_two_training_steps_on_each_family_at_an_odd_size(name):
    """Two SGD steps in training mode; every parameter gets a gradient in each."""
    backbone, in_channels, fed_stages = TWO_PASS_BACKBONES[name]
    torch.manual_seed(0)
    model = RecursiveFeaturePyramid(backbone, fpn(in_channels, 32), aspp_out_channels=8)
    model.init_weights()
    model.train()
    assert [stage for _, stage in model.feedback_paths] == fed_stages
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    image = torch.randn(2, 3, 99, 131)
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        outs = model(image)
        assert [tuple(o.shape[-2:]) for o in outs] == [(25, 33), (13, 17), (7, 9), (4, 5),
                                                        (2, 3)]
        loss = total_output(outs)
        assert torch.isfinite(loss)
        loss.backward()
        assert not grads_missing(model)
        optimizer.step()
    # After the first step the zero-initialised feedback convs carry signal.
    assert all(conv.weight.abs().sum() > 0 for conv in model.feedback_convs.modules()
               if isinstance(conv, nn.Conv2d))


def test_three_steps_at_an_odd_size():
    model = RecursiveFeaturePyramid(**TINY, rfp_steps=3)
    assert len(model.rfp_backbones) == 2 and len(model.feedback_convs) == 2
    outs = model(torch.randn(2, 3, 99, 131))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 25, 33), (2, 32, 13, 17), (2, 32, 7, 9),
                                             (2, 32, 4, 5), (2, 32, 2, 3)]
    total_output(outs).backward()
    assert not grads_missing(model)


def test_a_deep_copy_runs_its_own_modules():
    # EMA hooks deep-copy the model: the copy's stage runners must drive the copy.
    model = RecursiveFeaturePyramid(**TINY).eval()
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.rfp_backbones[0].layer4.parameters():
            p.mul_(2)
        image = torch.randn(1, 3, 64, 96)
        assert (clone(image)[3] - model(image)[3]).abs().max() > 1e-4


def test_fpn_with_start_level_feeds_the_matching_stages():
    # RetinaNet-style: the pyramid starts at C3 (stage 1); P3 is its finest level, not fed.
    model = RecursiveFeaturePyramid(TINY_BACKBONE, fpn([16, 32, 64, 128], 32, start_level=1),
                                    aspp_out_channels=8)
    assert model.feedback_paths == ((1, 2), (2, 3))
    outs = model(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]


def test_every_copy_is_initialised_from_the_backbone_checkpoint(tmp_path):
    source = MMDET.build(TINY_BACKBONE)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    checkpoint = tmp_path / 'tiny_resnet.pth'
    torch.save(source.state_dict(), checkpoint)
    backbone = dict(TINY_BACKBONE, init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint)))
    # A wrapper-level init that would reach every conv, to show the zero init survives it.
    model = RecursiveFeaturePyramid(backbone, TINY_NECK, rfp_steps=3, aspp_out_channels=8,
                                    init_cfg=dict(type='Normal', layer='Conv2d', std=1.0))
    model.init_weights()
    for replica in (model.backbone, *model.rfp_backbones):
        for key, value in source.state_dict().items():
            torch.testing.assert_close(replica.state_dict()[key], value)
    for conv in [model.gate, *model.feedback_convs.modules()]:
        if isinstance(conv, nn.Conv2d):
            assert conv.weight.abs().sum() == 0 and conv.bias.abs().sum() == 0
    # The ASPP's own init (Kaiming normal, zero bias) ran.
    assert all(conv.bias.abs().sum() == 0 and conv.weight.std() > 0 for conv in model.aspp.aspp)


def sac_state(model: nn.Module):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()
            if re.search(r'conv2\.(switch|pre_context|post_context|offset_s|offset_l|weight_diff)',
                         name)}


def test_sac_keeps_its_own_init_in_backbones_initialised_from_scratch(tmp_path):
    """The backbones' Kaiming init of every Conv2d must not reach SAC's switch and offsets."""
    backbone = dict(type='DetectoRS_ResNet', **resnet(50, base=8), **SAC)
    model = RecursiveFeaturePyramid(backbone, fpn([32, 64, 128, 256], 32), aspp_out_channels=8)
    model.init_weights()
    state = sac_state(model)
    assert len(state) == 2 * 13 * 11  # 13 SAC convs per copy, 11 tensors each
    for name, tensor in state.items():
        expected = 1.0 if name.endswith('switch.bias') else 0.0
        assert torch.all(tensor == expected), name
    # A backbone that loads a checkpoint keeps the SAC weights it loaded.
    source = MMDET.build(backbone)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    checkpoint = tmp_path / 'detectors_resnet.pth'
    torch.save(source.state_dict(), checkpoint)
    loaded = RecursiveFeaturePyramid(
        dict(backbone, init_cfg=dict(type='Pretrained', checkpoint=str(checkpoint))),
        fpn([32, 64, 128, 256], 32), aspp_out_channels=8)
    loaded.init_weights()
    for name, tensor in sac_state(loaded).items():
        key = name.split('.', 1)[1] if name.startswith('backbone.') else name.split('.', 2)[2]
        torch.testing.assert_close(tensor, source.state_dict()[key])


def test_frozen_stages_and_norm_eval_apply_to_every_copy():
    backbone = dict(TINY_BACKBONE, frozen_stages=1, norm_eval=True)
    model = RecursiveFeaturePyramid(backbone, TINY_NECK, aspp_out_channels=8).train()
    for replica in (model.backbone, *model.rfp_backbones):
        frozen = [replica.conv1, replica.norm1, replica.layer1]
        assert all(not p.requires_grad for m in frozen for p in m.parameters())
        assert all(not m.training for m in replica.modules() if isinstance(m, nn.BatchNorm2d))
        assert all(p.requires_grad for p in replica.layer2.parameters())
    assert model.neck.training and model.aspp.training
    total_output(model(torch.randn(1, 3, 64, 96))).backward()
    assert not grads_missing(model)


def test_mmseg_scope_builds_mmsegs_modules():
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODEL_REGISTRIES['mmseg'].build(
            dict(type='RecursiveFeaturePyramid', backbone=dict(TINY_BACKBONE, type='ResNetV1c'),
                 neck=TINY_NECK, aspp_out_channels=8))
    assert type(model.backbone).__module__.startswith('mmseg.')
    assert type(model.neck).__module__.startswith('mmseg.')
    assert len(model(torch.randn(1, 3, 64, 96))) == 5


BAD_CONFIGS = [
    (dict(TINY, rfp_steps=1), 'rfp_steps'),
    (dict(TINY, share_backbone_weights='yes'), 'share_backbone_weights'),
    (dict(TINY, aspp_out_channels=16), 'aspp_out_channels'),
    (dict(TINY, aspp_dilations=(1, 3, 6)), 'aspp_dilations'),
    (dict(TINY, neck=fpn([16, 32, 64, 256], 32)), 'neck.in_channels'),
    (dict(TINY, neck=fpn([128], 32, num_outs=2), backbone=dict(TINY_BACKBONE, out_indices=(3, ))),
     'neck'),
    (dict(TINY, backbone=dict(HALF_DLA34, out_indices=(0, 1, 2, 3, 4, 5)),
          neck=fpn([8, 16, 32, 64, 128, 256], 32, num_outs=6)), 'backbone.out_indices'),
    (dict(TINY, backbone=dict(type='ResNeSt', depth=50, base_channels=16, stem_channels=16),
          neck=fpn([64, 128, 256, 512], 32)), 'supported types'),
    (dict(TINY, backbone=dict(type='DetectoRS_ResNet', depth=50, output_img=True),
          neck=fpn([256, 512, 1024, 2048], 32)), 'output_img'),
    (dict(TINY, backbone='ResNet'), 'backbone'),
]


@pytest.mark.parametrize('kwargs, name', BAD_CONFIGS,
                         ids=[f'{i}-{name}' for i, (_, name) in enumerate(BAD_CONFIGS)])
def test_bad_configs_fail_at_build_naming_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=re.escape(name)) as error:
        RecursiveFeaturePyramid(**kwargs)
    if name == 'supported types':
        for name in ('mmdet.ResNet', 'mmdet.Res2Net', 'mmdet.SwinTransformer',
                     'mmdet.DetectoRS_ResNet', 'mmseg.ResNetV1c', 'DLA'):
            assert name in str(error.value)


def test_faster_rcnn_with_rfp_backbone_and_no_neck_runs_a_loss_step():
    base = Config.fromfile(osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_',
                                    'models', 'faster-rcnn_r50_fpn.py'))
    cfg = base.model
    cfg.backbone = dict(type='RecursiveFeaturePyramid', **TINY)
    cfg.neck = None
    cfg.rpn_head.update(in_channels=32, feat_channels=32)
    cfg.roi_head.bbox_roi_extractor.out_channels = 32
    cfg.roi_head.bbox_head.update(in_channels=32, fc_out_channels=64, num_classes=3)
    torch.manual_seed(0)
    # The data preprocessor is built through mmengine's root registry: it needs the scope.
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MMDET.build(cfg)
    assert not model.with_neck
    model.init_weights()
    model.train()
    data = model.data_preprocessor(make_det_batch(2, (96, 128), 3, seed=0), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    assert not grads_missing(model)
