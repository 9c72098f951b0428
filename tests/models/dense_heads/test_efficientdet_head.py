"""EfficientDetSepBNHead: parity with effdet's HeadNet, parameters, training, bad arguments.

Output layout: both effdet and mmdet's AnchorHead read a level's map as
``permute(0, 2, 3, 1).reshape(-1, C)``, i.e. channel ``anchor * C + output``. So with the
same weights the raw maps are equal channel for channel. What differs is the meaning of
the channels: mmdet's anchors at a location are ratio-major (ratios 0.5, 1, 2; octave
scales inner) with deltas (dx, dy, dw, dh), effdet's are octave-major (aspects 1:1,
1.4:0.7, 0.7:1.4 inner) with deltas (dy, dx, dh, dw). The converter
(``mmplug_agg.utils.effdet_conversion``) derives that permutation;
``test_effdet_weights_load_reordered`` checks that its anchors then are effdet's exactly and
that effdet's prediction rows, reordered by it, give mmdet-ordered outputs. The whole
detector's conversion is tested end to end in ``tests/tools/test_effdet_converter.py``.
"""
import re

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS
from mmplug_agg.models.dense_heads import EfficientDetSepBNHead
from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR
from mmplug_agg.utils.effdet_conversion import anchor_permutation, reorder_prediction_rows

effdet = pytest.importorskip('effdet')
from effdet.anchors import Anchors  # noqa: E402
from effdet.efficientdet import HeadNet  # noqa: E402

NUM_CLASSES = 90
SIZES = [32, 16, 8, 4, 2]  # P3-P7 of a 256 px image
BN = dict(type='BN', eps=1e-3, momentum=0.01)


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


def num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def d0_head_cfg(**changes) -> dict:
    """The D0 config's head, with plain BN (SyncBN needs a process group)."""
    cfg = Config.fromfile(str(CONFIG_DIR / 'efficientdet_d0_bifpn_coco.py')).model.bbox_head
    cfg = cfg.to_dict()
    cfg.update(num_classes=NUM_CLASSES, norm_cfg=BN)
    cfg.update(changes)
    return cfg


def build_head(**changes) -> EfficientDetSepBNHead:
    head = MODELS.build(d0_head_cfg(**changes))
    head.init_weights()
    return head


def effdet_nets(seed: int = 0):
    """effdet's D0 class and box nets with random weights and BN statistics."""
    config = effdet.get_efficientdet_config('efficientdet_d0')
    assert config.num_levels == len(SIZES) and config.fpn_channels == 64
    torch.manual_seed(seed)
    nets = HeadNet(config, num_outputs=NUM_CLASSES), HeadNet(config, num_outputs=4)
    for net in nets:
        for name, tensor in net.state_dict().items():
            if name.endswith('running_var'):
                tensor.uniform_(0.5, 2.0)
            elif tensor.is_floating_point():
                tensor.normal_(std=0.2)
    return nets


def effdet_to_ours(state: dict, net: str) -> dict:
    """Rename one effdet HeadNet's state dict to ours; ``net`` is 'cls' or 'reg'."""
    renamed = {}
    for key, value in state.items():
        conv = re.fullmatch(r'conv_rep\.(\d+)\.conv_(dw|pw)\.(\w+)', key)
        norm = re.fullmatch(r'bn_rep\.(\d+)\.(\d+)\.bn\.(\w+)', key)
        pred = re.fullmatch(r'predict\.conv_(dw|pw)\.(\w+)', key)
        if conv:
            repeat, kind, param = conv.groups()
            new = f'{net}_convs.{repeat}.{_SEPARABLE[kind]}.{param}'
        elif norm:
            repeat, level, param = norm.groups()
            new = f'{net}_norms.{level}.{repeat}.{param}'  # effdet keeps repeats first
        elif pred:
            kind, param = pred.groups()
            new = f'{net}_pred.{_SEPARABLE[kind]}.{param}'
        else:
            raise KeyError(f'unmapped effdet key {key}')
        renamed[new] = value
    return renamed


_SEPARABLE = dict(dw='depthwise', pw='pointwise')


def copy_effdet_into(head: EfficientDetSepBNHead, class_net, box_net) -> None:
    state = {**effdet_to_ours(class_net.state_dict(), 'cls'),
             **effdet_to_ours(box_net.state_dict(), 'reg')}
    assert set(state) == set(head.state_dict())
    head.load_state_dict(state)


def level_features(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 64, s, s, generator=gen) for s in SIZES]


def test_outputs_equal_effdet_heads():
    class_net, box_net = effdet_nets()
    head = build_head()
    copy_effdet_into(head, class_net, box_net)
    head.eval(), class_net.eval(), box_net.eval()
    feats = level_features()
    with torch.no_grad():
        cls_scores, bbox_preds = head(feats)
        ref_cls, ref_box = class_net(feats), box_net(feats)
    assert head.num_base_priors == 9
    for level, size in enumerate(SIZES):
        assert cls_scores[level].shape == ref_cls[level].shape == (2, 9 * NUM_CLASSES, size, size)
        assert bbox_preds[level].shape == ref_box[level].shape == (2, 9 * 4, size, size)
        assert (cls_scores[level] - ref_cls[level]).abs().max() < 1e-5
        assert (bbox_preds[level] - ref_box[level]).abs().max() < 1e-5


def converter_permutation(head: EfficientDetSepBNHead) -> torch.Tensor:
    """The converter's ``perm[m]`` (effdet's index of our anchor ``m``), checked on anchors."""
    generator = head.prior_generator
    perm = torch.tensor(anchor_permutation(generator.aspects, generator.scales_per_octave))
    ours = generator.single_level_grid_priors((1, 1), 0, device='cpu')
    config = effdet.get_efficientdet_config('efficientdet_d0')
    theirs = Anchors.from_config(config).boxes[:9][:, [1, 0, 3, 2]]  # yxyx -> xyxy
    torch.testing.assert_close(ours, theirs[perm].float(), rtol=0, atol=1e-4)
    return perm


def reorder_maps(maps: torch.Tensor, perm: torch.Tensor, per_anchor: list,
                 source_per_anchor: int) -> torch.Tensor:
    """Output maps (N, A * C, H, W) in the converter's row order."""
    return reorder_prediction_rows(maps.transpose(0, 1), perm.tolist(), per_anchor,
                                   source_per_anchor).transpose(0, 1)


def test_effdet_weights_load_reordered():
    class_net, box_net = effdet_nets(seed=2)
    head = build_head()
    perm = converter_permutation(head)
    assert perm.tolist() == [1, 4, 7, 0, 3, 6, 2, 5, 8]
    classes, yx_to_xy = list(range(NUM_CLASSES)), [1, 0, 3, 2]
    copy_effdet_into(head, class_net, box_net)
    with torch.no_grad():
        for pred, per_anchor, size in ((head.cls_pred, classes, NUM_CLASSES),
                                       (head.reg_pred, yx_to_xy, 4)):
            for param in (pred.pointwise.weight, pred.pointwise.bias):
                param.copy_(reorder_prediction_rows(param, perm.tolist(), per_anchor, size))
    head.eval(), class_net.eval(), box_net.eval()
    feats = level_features(seed=3)
    with torch.no_grad():
        cls_scores, bbox_preds = head(feats)
        ref_cls, ref_box = class_net(feats), box_net(feats)
    for level in range(len(SIZES)):
        expected_cls = reorder_maps(ref_cls[level], perm, classes, NUM_CLASSES)
        expected_box = reorder_maps(ref_box[level], perm, yx_to_xy, 4)
        assert (cls_scores[level] - expected_cls).abs().max() < 1e-5
        assert (bbox_preds[level] - expected_box).abs().max() < 1e-5


@pytest.mark.parametrize('stacked_convs', [3, 4])
def test_parameters_equal_effdet(stacked_convs):
    config = effdet.get_efficientdet_config('efficientdet_d0')
    config.box_class_repeats = stacked_convs
    expected = num_params(HeadNet(config, NUM_CLASSES)) + num_params(HeadNet(config, 4))
    assert num_params(build_head(stacked_convs=stacked_convs)) == expected
    # The TF checkpoints' redundant bias: one per stacked pointwise conv and channel.
    with_bias = build_head(stacked_convs=stacked_convs, conv_bias=True)
    assert num_params(with_bias) == expected + 2 * stacked_convs * 64


def test_init_follows_effdet():
    head = build_head()
    prior = -torch.log(torch.tensor((1 - 0.01) / 0.01))
    torch.testing.assert_close(head.cls_pred.pointwise.bias.data,
                               prior.expand_as(head.cls_pred.pointwise.bias))
    assert not head.reg_pred.pointwise.bias.any()
    for conv in (head.cls_convs[0].depthwise, head.reg_convs[1].pointwise):
        std = conv.weight[0].numel()**-0.5
        assert 0.8 * std < conv.weight.std() < 1.2 * std
        assert conv.bias is None


def tiny_detector_cfg() -> dict:
    head = d0_head_cfg(num_classes=4, in_channels=16, feat_channels=16, stacked_convs=2)
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.7, 116.3, 103.5],
                               std=[58.4, 57.1, 57.4], bgr_to_rgb=True, pad_size_divisor=32),
        backbone=dict(type='ResNet', depth=18, base_channels=8, stem_channels=8,
                      out_indices=(1, 2, 3), norm_eval=False),
        neck=dict(type='FPN', in_channels=[16, 32, 64], out_channels=16, start_level=0,
                  add_extra_convs='on_input', num_outs=5),
        bbox_head=head,
        train_cfg=dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.4,
                                     min_pos_iou=0, ignore_iof_thr=-1),
                       sampler=dict(type='PseudoSampler'), allowed_border=-1, pos_weight=-1,
                       debug=False),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.0,
                      nms=dict(type='nms', iou_threshold=0.5), max_per_img=10))


def test_tiny_detector_loss_and_predict():
    torch.manual_seed(0)
    model = MODELS.build(ConfigDict(tiny_detector_cfg()))  # the heads read cfg attributes
    model.init_weights()
    head = model.bbox_head
    assert isinstance(head, EfficientDetSepBNHead)
    assert head.cls_pred.pointwise.bias[0].item() == pytest.approx(-4.59512, abs=1e-4)
    model.train()
    data = model.data_preprocessor(make_det_batch(2, (128, 128), 4, seed=0), True)
    losses = model(**data, mode='loss')
    total = sum(sum(v) if isinstance(v, list) else v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    # The box net's norms of a level without positive anchors (the coarse ones, for these
    # small random boxes) get zero gradient; everything else must move.
    zero = [n for n, p in head.named_parameters() if not p.grad.abs().sum() > 0]
    assert all(n.startswith('reg_norms.') for n in zero), zero

    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(make_det_batch(1, (128, 128), 4, seed=1)),
                        mode='predict')
    instances = results[0].pred_instances
    assert 0 < len(instances.scores) <= 10
    assert instances.bboxes.shape == (len(instances.scores), 4)


@pytest.mark.parametrize('change, argument', [
    (dict(stacked_convs=0), 'stacked_convs'),
    (dict(num_ins=0), 'num_ins'),
    (dict(num_ins=4), 'num_ins'),  # the anchor generator has 5 strides
    (dict(norm_cfg=None), 'norm_cfg'),
])
def test_bad_arguments_name_the_argument(change, argument):
    with pytest.raises(ValueError, match=argument):
        MODELS.build(d0_head_cfg(**change))


def test_wrong_number_of_levels_is_reported():
    head = build_head()
    with pytest.raises(ValueError, match='num_ins is 5'):
        head(level_features()[:4])


def test_anchor_generator_arguments_are_checked():
    from mmplug_agg.models.dense_heads.efficientdet_head import EfficientDetAnchorGenerator
    with pytest.raises(ValueError, match='aspects'):
        EfficientDetAnchorGenerator(ratios=[1.0], strides=[8], octave_base_scale=4,
                                    scales_per_octave=3)
    with pytest.raises(ValueError, match='aspects'):
        EfficientDetAnchorGenerator(aspects=[(1.0, -1.0)], strides=[8], octave_base_scale=4,
                                    scales_per_octave=3)


def test_nms_pre_all_levels_picks_the_best_pairs_over_all_levels():
    head = build_head()
    head.eval()
    feats = level_features(seed=4)[:]
    with torch.no_grad():
        cls_scores, bbox_preds = head([f[:1] for f in feats])
    metas = [dict(img_shape=(256, 256), scale_factor=(1.0, 1.0))]
    cfg = ConfigDict(nms_pre=50, score_thr=0.0, min_bbox_size=-1, max_per_img=1000,
                     nms=dict(type='nms', iou_threshold=1.0))
    per_level = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, cfg=cfg)[0]
    cfg.nms_pre_all_levels = True
    overall = head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas, cfg=cfg)[0]
    # 50 per level (5 levels) against the 50 best of all levels together.
    assert len(per_level) == 250 and len(overall) == 50
    best = torch.cat([s[0].permute(1, 2, 0).reshape(-1) for s in cls_scores]).sigmoid()
    torch.testing.assert_close(overall.scores.sort(descending=True).values,
                               best.topk(50).values)
