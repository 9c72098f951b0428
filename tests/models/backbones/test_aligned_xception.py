"""AlignedXception: timm parity at every output stride, timm:// weights, v3+ segmentor, errors."""
import pytest
import timm
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import (XCEPTION_ARCHS, AlignedXception,
                                         convert_xception_state_dict)
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR

ALL_OUTS = (0, 1, 2, 3, 4)
SMALL_IMAGE = (65, 97)
ODD_IMAGE = (333, 517)


def randomise_bn(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine parameters, so the BN mapping is tested too."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


def timm_features(depth: int, output_stride: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_bn(timm.create_model(f'xception{depth}', pretrained=False,
                                          features_only=True, output_stride=output_stride))


def grads_missing(model: nn.Module):
    return [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]


@pytest.mark.parametrize('depth,output_stride',
                         [(65, 32), (65, 16), (65, 8), (41, 16), (71, 32), (71, 16)])
def test_converted_timm_weights_give_timm_features(depth, output_stride):
    reference = timm_features(depth, output_stride)
    converted, dropped = convert_xception_state_dict(reference.state_dict())
    assert dropped == []
    ours = AlignedXception(depth, output_stride=output_stride, out_indices=ALL_OUTS,
                           tap_before_relu=False)
    ours.load_state_dict(converted, strict=True)
    ours.eval()
    assert (sum(p.numel() for p in ours.parameters())
            == sum(p.numel() for p in reference.parameters()))

    image = torch.randn(1, 3, *SMALL_IMAGE)
    with torch.no_grad():
        expected = reference(image)
        got = ours(image)
        ours.tap_before_relu = True  # TF's end points: the same taps before their ReLU
        got_tf = ours(image)
    assert len(got) == 5
    for index, (g, g_tf, e) in enumerate(zip(got, got_tf, expected)):
        assert g.shape == e.shape, index
        assert (g - e).abs().max().item() < 1e-5, index
        if index < 4:
            assert g_tf.min() < 0, index
            assert (g_tf.relu() - e).abs().max().item() < 1e-5, index
        else:
            assert torch.equal(g_tf, g)
    # Features 0-3 sit at nominal strides 2-16 unless output_stride caps them.
    for index, feature in enumerate(got):
        stride = min(2 ** (index + 1), output_stride)
        assert feature.shape[-2:] == tuple(-(-s // stride) for s in SMALL_IMAGE), index


def test_xception71_keeps_tf_shortcut_that_timm_drops_at_output_stride_8():
    # Entry block 5 of Xception-71 (728 -> 728, stride 2) has a 1x1-conv shortcut in TF
    # DeepLab at every output stride; timm decides from the stride after dilation and
    # drops it at output stride 8. The rest of the two models is the same.
    reference = timm_features(71, 8)
    ours = AlignedXception(71, output_stride=8, out_indices=ALL_OUTS)
    converted, _ = convert_xception_state_dict(reference.state_dict())
    result = ours.load_state_dict(converted, strict=False)
    assert not result.unexpected_keys
    assert {k.rsplit('.', 2)[0] for k in result.missing_keys} == {'blocks.4.shortcut'}
    assert ours.blocks[4].shortcut.conv.stride == (1, 1)


def test_paper_layout_strides_dilations_and_param_count():
    model = AlignedXception(65, output_stride=16)
    # 2 stem convs + 21 blocks of 3 separable convs (63 depthwise + 63 pointwise 1x1),
    # i.e. the 65 layers of the name: 2 + 21 * 3 = 65 separable/plain conv layers.
    assert len(model.blocks) == 3 + 16 + 2 == len(XCEPTION_ARCHS[65]['entry']) + 16 + 2
    assert model.tap_blocks == [0, 1, 2, 19]
    assert model.out_channels == [256, 2048]
    # timm's xception65 without its classifier: 37.87 M parameters.
    assert sum(p.numel() for p in model.parameters()) == 37_867_312
    dilations = [block.convs[0].depthwise_conv.conv.dilation[0] for block in model.blocks]
    assert dilations == [1] * 20 + [2]
    model8 = AlignedXception(65, output_stride=8)
    dilations = [block.convs[0].depthwise_conv.conv.dilation[0] for block in model8.blocks]
    # The block that gives up its stride keeps the current rate; the later ones dilate.
    assert dilations == [1, 1, 1] + [2] * 17 + [4]
    strides = [block.convs[2].depthwise_conv.conv.stride[0] for block in model8.blocks]
    assert strides == [2, 2] + [1] * 19
    # The layer order inside a block: ReLU -> depthwise -> BN -> pointwise -> BN.
    assert model.blocks[3].convs[0].depthwise_conv.order == ('act', 'conv', 'norm')
    assert not model.blocks[3].convs[0].pointwise_conv.with_activation
    last = model.blocks[-1]
    assert last.shortcut is None and last.shortcut_type == 'none'
    assert last.convs[0].depthwise_conv.order == ('conv', 'norm', 'act')


def test_state_dict_is_the_same_at_every_output_stride():
    # Checkpoints trained at output stride 16 evaluate at 8 (the paper's protocol).
    shapes = {os: {k: v.shape for k, v in AlignedXception(41, output_stride=os)
                   .state_dict().items()} for os in (8, 16, 32)}
    assert shapes[8] == shapes[16] == shapes[32]


def test_timm_scheme_loads_xception65(monkeypatch):
    real_create = timm.create_model
    requested = []

    def create_model(name, pretrained=False, **kwargs):
        requested.append((name, pretrained))
        torch.manual_seed(7)
        return randomise_bn(real_create(name, pretrained=False, **kwargs))

    monkeypatch.setattr(timm, 'create_model', create_model)
    model = AlignedXception(
        65, out_indices=ALL_OUTS, tap_before_relu=False, output_stride=16,
        init_cfg=dict(type='Pretrained', checkpoint='timm://xception65.tf_in1k'))
    model.init_weights()
    assert requested == [('xception65.tf_in1k', True)]
    torch.manual_seed(7)
    reference = randomise_bn(real_create('xception65', pretrained=False, features_only=True,
                                         output_stride=16))
    model.eval()
    image = torch.randn(1, 3, *SMALL_IMAGE)
    with torch.no_grad():
        for got, expected in zip(model(image), reference(image)):
            assert (got - expected).abs().max().item() < 1e-5

    from mmplug_agg.utils.checkpoint import load_timm_checkpoint
    with pytest.raises(ValueError, match='pre-activation .* xception65'):
        load_timm_checkpoint('timm://xception41p.ra3_in1k')


def test_widen_factor_scales_every_width():
    model = AlignedXception(41, widen_factor=0.25, out_indices=ALL_OUTS)
    assert model.out_channels == [32, 64, 184, 256, 512]  # multiples of 8
    assert model.stem[0].conv.out_channels == 8
    assert sum(p.numel() for p in model.parameters()) == 1_646_184


def test_registry_build_for_mmseg_and_mmdet():
    for toolbox in ('mmseg', 'mmdet'):
        model = MODEL_REGISTRIES[toolbox].build(
            dict(type='AlignedXception', depth=41, out_indices=(1, 2, 3, 4)))
        assert isinstance(model, AlignedXception)
        assert model.out_channels == [256, 728, 1024, 2048]


def v3plus_segmentor(depth: int, channels: int, **backbone) -> nn.Module:
    init_default_scope('mmseg')
    norm_cfg = dict(type='BN', requires_grad=True)
    return MODEL_REGISTRIES['mmseg'].build(ConfigDict(
        type='EncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[127.5] * 3, std=[127.5] * 3,
                               bgr_to_rgb=True, size_divisor=1, seg_pad_val=255),
        backbone=dict(type='AlignedXception', depth=depth, **backbone),
        decode_head=dict(type='DepthwiseSeparableASPPHead', in_channels=2048, in_index=1,
                         channels=channels, dilations=(1, 6, 12, 18), c1_in_channels=256,
                         c1_channels=48, dropout_ratio=0.1, num_classes=5,
                         norm_cfg=norm_cfg, align_corners=False),
        test_cfg=dict(mode='whole')))


def test_v3plus_loss_every_gradient_and_predict_at_odd_size():
    torch.manual_seed(0)
    model = v3plus_segmentor(65, 32, output_stride=16)  # ConvModules init on construction
    model.train()
    data = model.data_preprocessor(make_seg_batch(2, (97, 129), 5), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    assert not grads_missing(model)
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(make_seg_batch(1, ODD_IMAGE, 5, seed=1), False)
        (sample, ) = model(**data, mode='predict')
    assert sample.seg_logits.data.shape == (5, *ODD_IMAGE)
    assert sample.pred_sem_seg.data.shape == (1, *ODD_IMAGE)


def test_frozen_stages_and_norm_eval():
    model = AlignedXception(41, frozen_stages=1, norm_eval=True)
    model.train()
    entry_end = model.flow_ends[0]
    frozen = [model.stem, *model.blocks[:entry_end]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in model.blocks[entry_end:].parameters())
    assert all(not m.training for m in frozen)
    assert model.blocks[entry_end].training
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))

    model = AlignedXception(41, frozen_stages=3)
    model.train()
    assert not any(p.requires_grad for p in model.parameters())
    model = AlignedXception(41, frozen_stages=-1)
    model.train()
    assert all(p.requires_grad for p in model.parameters())
    assert all(m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_with_cp_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = AlignedXception(41, out_indices=ALL_OUTS, output_stride=8)
    checkpointed = AlignedXception(41, out_indices=ALL_OUTS, output_stride=8, with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    image = torch.randn(2, 3, 33, 49)
    results = []
    for model in (plain, checkpointed):
        model.train()
        inputs = image.clone().requires_grad_()
        outs = model(inputs)
        sum(o.square().mean() for o in outs).backward()
        results.append((outs, inputs.grad, {n: p.grad for n, p in model.named_parameters()}))
    (outs_a, grad_a, params_a), (outs_b, grad_b, params_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(grad_a, grad_b)
    assert not grads_missing(checkpointed)
    for name, grad in params_a.items():
        torch.testing.assert_close(grad, params_b[name], msg=name)


def test_subset_of_outputs_and_checkpointing_behind_frozen_flows():
    torch.manual_seed(0)
    full = AlignedXception(41, out_indices=ALL_OUTS).eval()
    early = AlignedXception(41, out_indices=(2, 0)).eval()
    early.load_state_dict(full.state_dict())
    image = torch.randn(1, 3, 33, 49)
    with torch.no_grad():
        expected = full(image)
        got = early(image)
    assert [g.shape[1] for g in got] == early.out_channels == [728, 128]
    assert torch.equal(got[0], expected[2]) and torch.equal(got[1], expected[0])

    # The input of the middle flow needs no gradient when the entry flow is frozen;
    # checkpointed middle and exit blocks must still train.
    model = AlignedXception(41, frozen_stages=1, with_cp=True)
    model.train()
    sum(o.mean() for o in model(image)).backward()
    assert not grads_missing(model)
    assert all(p.grad is None for p in model.stem.parameters())


@pytest.mark.parametrize('kwargs,match', [
    (dict(depth=50), r'depth must be one of \[41, 65, 71\], got 50'),
    (dict(output_stride=4), r'output_stride must be one of \[8, 16, 32\], got 4'),
    (dict(out_indices=(1, 5)), r'out_indices must be distinct ints in 0-4'),
    (dict(out_indices=(1, 1)), r'out_indices must be distinct ints in 0-4'),
    (dict(frozen_stages=4), r'frozen_stages must be in -1..3'),
    (dict(widen_factor=0), r'widen_factor must be a number > 0, got 0'),
])
def test_bad_arguments_name_the_argument_and_the_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AlignedXception(**kwargs)


def test_bad_block_shortcuts_are_refused():
    from mmplug_agg.models.backbones.aligned_xception import XceptionBlock
    with pytest.raises(ValueError, match=r"shortcut must be one of \('conv', 'sum', 'none'\)"):
        XceptionBlock(8, (8, 8, 8), shortcut='identity')
    with pytest.raises(ValueError, match=r"shortcut='sum' needs in_channels == channels\[-1\]"):
        XceptionBlock(8, (8, 8, 16), shortcut='sum')


def test_os8_evaluation_override_of_the_configs():
    # The documented switch: train at output stride 16 with rates (6, 12, 18), evaluate
    # at 8 with (12, 24, 36) on the same checkpoint.
    cfg = Config.fromfile(str(CONFIG_DIR / 'deeplabv3plus_xception65_voc12aug.py'))
    assert cfg.model.backbone.output_stride == 16
    assert tuple(cfg.model.decode_head.dilations) == (1, 6, 12, 18)
    cfg.merge_from_dict({'model.backbone.output_stride': 8,
                         'model.decode_head.dilations': (1, 12, 24, 36),
                         'model.backbone.depth': 41,
                         'model.backbone.init_cfg': None})
    init_default_scope('mmseg')
    model = MODEL_REGISTRIES['mmseg'].build(cfg.model)
    head = model.decode_head
    branches = list(head.aspp_modules)[1:]
    assert [m.depthwise_conv.conv.dilation[0] for m in branches] == [12, 24, 36]
    assert model.backbone.blocks[-1].convs[0].depthwise_conv.conv.dilation[0] == 4
    trained = AlignedXception(41, output_stride=16, norm_cfg=dict(type='BN', eps=1e-3))
    model.backbone.load_state_dict(trained.state_dict(), strict=True)
