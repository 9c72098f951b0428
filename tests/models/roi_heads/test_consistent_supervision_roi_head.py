"""Consistent supervision: auxiliary losses on the laterals, in training only."""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR

SHAPE = (128, 160)


def demo_model_cfg(name='augfpn_faster_rcnn_r50_demo.py'):
    return Config.fromfile(str(CONFIG_DIR / name)).model


def build(model_cfg):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def all_finite(losses):
    values = [t for v in losses.values() for t in (v if isinstance(v, list) else [v])]
    return all(torch.isfinite(t).all() for t in values)


def losses_of(model, batch):
    model.train()
    return model(**model.data_preprocessor(batch, True), mode='loss')


def test_auxiliary_losses_in_training():
    model = build(demo_model_cfg())
    losses = losses_of(model, make_det_batch(2, SHAPE, 4, seed=1))
    assert {'aux_loss_cls', 'aux_loss_bbox', 'aux_acc'} <= set(losses)
    assert all_finite(losses)


def test_aux_loss_is_lambda_times_the_sum_over_levels():
    cfg = demo_model_cfg()
    cfg.roi_head.aux_loss_weight = 0.3
    model = build(cfg).train()
    batch = model.data_preprocessor(make_det_batch(2, SHAPE, 4, seed=2), True)
    feats = model.extract_feat(batch['inputs'])
    roi_head = model.roi_head
    sampling_results = []
    for sample in batch['data_samples']:
        gt = sample.gt_instances
        proposals = InstanceData(priors=torch.cat([gt.bboxes, gt.bboxes + 3]))  # boxes as tensors
        assign = roi_head.bbox_assigner.assign(proposals, gt, sample.ignored_instances)
        sampling_results.append(roi_head.bbox_sampler.sample(assign, proposals, gt))

    aux = roi_head.bbox_loss(feats, sampling_results)['loss_bbox']

    head = roi_head.aux_bbox_head
    rois = bbox2roi([res.priors for res in sampling_results])
    pooled = roi_head.aux_roi_extractor(feats.laterals, rois)
    targets = head.get_targets(sampling_results, roi_head.train_cfg)
    expected_cls = expected_bbox = 0
    for level in range(pooled.size(1)):
        level_losses = head.loss(*head(pooled[:, level]), rois, *targets)
        expected_cls = expected_cls + 0.3 * level_losses['loss_cls']
        expected_bbox = expected_bbox + 0.3 * level_losses['loss_bbox']
    torch.testing.assert_close(aux['aux_loss_cls'], expected_cls)
    torch.testing.assert_close(aux['aux_loss_bbox'], expected_bbox)


def test_predict_is_identical_with_and_without_consistent_supervision():
    with_cs = build(demo_model_cfg()).eval()
    plain_cfg = demo_model_cfg()
    plain_cfg.roi_head.type = 'StandardRoIHead'
    for key in ('aux_loss_weight', 'share_aux_head'):
        plain_cfg.roi_head.pop(key)
    plain = build(plain_cfg).eval()
    missing, unexpected = plain.load_state_dict(with_cs.state_dict(), strict=False)
    assert not missing and all(k.startswith('roi_head.aux_') for k in unexpected)
    batch = make_det_batch(2, SHAPE, 4, seed=3)
    with torch.no_grad():
        ours = with_cs(**with_cs.data_preprocessor(batch, False), mode='predict')
        reference = plain(**plain.data_preprocessor(batch, False), mode='predict')
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes)
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores)


def test_shared_head_adds_no_parameters():
    separate = build(demo_model_cfg())
    cfg = demo_model_cfg()
    cfg.roi_head.share_aux_head = True
    shared = build(cfg)
    assert shared.roi_head.aux_bbox_head is None
    extra = sum(p.numel() for p in separate.roi_head.aux_bbox_head.parameters())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(separate) - count(shared) == extra
    losses = losses_of(shared, make_det_batch(2, SHAPE, 4, seed=4))
    assert 'aux_loss_cls' in losses


def test_zero_weight_gives_zero_aux_loss():
    cfg = demo_model_cfg()
    cfg.roi_head.aux_loss_weight = 0.0
    losses = losses_of(build(cfg), make_det_batch(1, SHAPE, 4, seed=5))
    assert losses['aux_loss_cls'] == 0 and losses['aux_loss_bbox'] == 0


def test_images_without_boxes_and_batch_of_one():
    model = build(demo_model_cfg())
    losses = losses_of(model, make_det_batch(1, SHAPE, 4, num_boxes=0, seed=6))
    assert all_finite(losses)


def test_mask_rcnn_gets_auxiliary_mask_loss():
    model = build(demo_model_cfg('augfpn_mask_rcnn_r50_demo.py'))
    losses = losses_of(model, make_det_batch(2, SHAPE, 4, with_mask=True, seed=7))
    assert {'aux_loss_cls', 'aux_loss_bbox', 'aux_loss_mask', 'loss_mask'} <= set(losses)
    model.parse_losses(losses)[0].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


def test_plain_fpn_neck_is_refused_clearly():
    cfg = demo_model_cfg()
    cfg.neck.type = 'FPN'
    cfg.neck.pop('pool_ratios')
    with pytest.raises(RuntimeError, match="AugFPN"):
        losses_of(build(cfg), make_det_batch(1, SHAPE, 4, seed=8))


def test_negative_weight_is_refused():
    cfg = copy.deepcopy(demo_model_cfg())
    cfg.roi_head.aux_loss_weight = -1
    with pytest.raises(ValueError, match='aux_loss_weight'):
        build(cfg)


def test_gather_pooling_gives_the_mmcv_layers_losses_and_gradients():
    """The CPU fast path (row gathers) against mmcv's RoIAlign kernels, whole detector."""
    results = {}
    for impl in ('roi_layer', 'gather'):
        cfg = demo_model_cfg()
        cfg.roi_head.bbox_roi_extractor.pooling_impl = impl
        model = build(cfg)
        assert model.roi_head.aux_roi_extractor.pooling_impl == impl  # follows the main one
        torch.manual_seed(3)  # the same RoI sampling in both runs
        losses = losses_of(model, make_det_batch(2, SHAPE, 4, seed=3))
        total, _ = model.parse_losses(losses)
        total.backward()
        results[impl] = (losses, {n: p.grad.clone() for n, p in model.named_parameters()
                                  if p.grad is not None})
    (mmcv_losses, mmcv_grads), (gather_losses, gather_grads) = results.values()
    for name, value in mmcv_losses.items():
        if 'loss' in name:
            torch.testing.assert_close(gather_losses[name], value, rtol=1e-4, atol=1e-6,
                                       msg=name)
    assert gather_grads.keys() == mmcv_grads.keys()
    for name, grad in mmcv_grads.items():
        torch.testing.assert_close(gather_grads[name], grad, rtol=1e-3, atol=1e-5, msg=name)
