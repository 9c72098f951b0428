"""AugFPN's official one-stage consistent supervision (RetinaNet and FCOS)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import RoIAlign
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR

SHAPE = (128, 160)
CONFIGS = ('augfpn_retinanet_r50_demo.py', 'augfpn_fcos_r50_demo.py')


def demo_model_cfg(name):
    return copy.deepcopy(Config.fromfile(str(CONFIG_DIR / name)).model)


def build(model_cfg):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def losses_of(model, batch):
    model.train()
    return model(**model.data_preprocessor(batch, True), mode='loss')


def finite(losses):
    return all(torch.isfinite(t).all() for v in losses.values()
               for t in (v if isinstance(v, list) else [v]))


def sampled_rois(aux_head, batch):
    results = []
    for sample in batch['data_samples']:
        gt = sample.gt_instances
        proposals = InstanceData(priors=torch.cat([gt.bboxes, gt.bboxes + 5, gt.bboxes * 0.5]))
        assign = aux_head.bbox_assigner.assign(proposals, gt, sample.ignored_instances)
        results.append(aux_head.bbox_sampler.sample(assign, proposals, gt))
    return results


@pytest.mark.parametrize('name', CONFIGS)
def test_aux_loss_is_the_official_per_level_sum(name):
    """Each level: RoIAlign from that lateral alone, the shared 2-fc head, cross entropy
    averaged over the RoIs and smooth L1 (beta 1) on the positives' class-specific deltas
    divided by the number of RoIs, all times 0.25 (the official AuxiliaryBBoxHead.loss)."""
    model = build(demo_model_cfg(name)).train()
    batch = model.data_preprocessor(make_det_batch(2, SHAPE, 4, seed=2), True)
    laterals = model.extract_feat(batch['inputs']).laterals
    aux_head = model.aux_head
    sampling_results = sampled_rois(aux_head, batch)
    ours = aux_head.bbox_loss(laterals, sampling_results)['loss_bbox']

    head = aux_head.bbox_head
    rois = bbox2roi([res.priors for res in sampling_results])
    labels, _, bbox_targets, bbox_weights = head.get_targets(sampling_results,
                                                             aux_head.train_cfg)
    expected_cls = expected_reg = 0
    for lateral, stride in zip(laterals, (8, 16, 32)):
        pooled = RoIAlign(7, spatial_scale=1 / stride, sampling_ratio=2, aligned=True)(
            lateral, rois)
        cls_score, bbox_pred = head(pooled)
        deltas = bbox_pred.view(len(rois), -1, 4)[torch.arange(len(rois)),
                                                  labels.clamp(max=head.num_classes - 1)]
        positive = (labels < head.num_classes).float()[:, None]
        smooth_l1 = F.smooth_l1_loss(deltas, bbox_targets, beta=1.0, reduction='none')
        expected_cls = expected_cls + 0.25 * F.cross_entropy(cls_score, labels)
        expected_reg = expected_reg + 0.25 * (smooth_l1 * positive).sum() / len(rois)
    assert bbox_weights.sum() > 0
    torch.testing.assert_close(ours['aux_loss_cls'], expected_cls)
    torch.testing.assert_close(ours['aux_loss_bbox'], expected_reg)


@pytest.mark.parametrize('name', CONFIGS)
def test_rois_are_the_heads_own_detections(name, monkeypatch):
    model = build(demo_model_cfg(name)).train()
    batch = model.data_preprocessor(make_det_batch(2, SHAPE, 4, seed=3), True)
    seen = {}
    original = type(model.aux_head).loss

    def spy(self, laterals, detections, data_samples):
        seen['detections'] = [d.clone() for d in detections]
        return original(self, laterals, detections, data_samples)

    monkeypatch.setattr(type(model.aux_head), 'loss', spy)
    model(**batch, mode='loss')
    feats = model.extract_feat(batch['inputs'])
    outs = model.bbox_head(feats)
    metas = [s.metainfo for s in batch['data_samples']]
    expected = model.bbox_head.predict_by_feat(*outs, batch_img_metas=metas,
                                               cfg=model.aux_head.proposal_cfg, rescale=False)
    for got, want in zip(seen['detections'], expected):
        assert len(want) <= 1000
        torch.testing.assert_close(got.bboxes, want.bboxes)
        torch.testing.assert_close(got.scores, want.scores)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_parameter_gets_a_gradient_and_predict_ignores_the_branch(name):
    model = build(demo_model_cfg(name))
    losses = losses_of(model, make_det_batch(2, (333, 517), 4, seed=4))
    assert {'aux_loss_cls', 'aux_loss_bbox'} <= set(losses) and finite(losses)
    model.parse_losses(losses)[0].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing

    plain_cfg = demo_model_cfg(name)
    plain_cfg.type = 'RetinaNet' if 'retinanet' in name else 'FCOS'
    plain_cfg.pop('aux_head')
    plain = build(plain_cfg).eval()
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith('aux_head.') for k in unexpected)
    batch = make_det_batch(1, (333, 517), 4, seed=5)
    model.eval()
    with torch.no_grad():
        ours = model(**model.data_preprocessor(batch, False), mode='predict')
        reference = plain(**plain.data_preprocessor(batch, False), mode='predict')
    torch.testing.assert_close(ours[0].pred_instances.bboxes, reference[0].pred_instances.bboxes)
    torch.testing.assert_close(ours[0].pred_instances.scores, reference[0].pred_instances.scores)


def test_images_without_ground_truth_and_batch_of_one():
    model = build(demo_model_cfg(CONFIGS[0]))
    losses = losses_of(model, make_det_batch(1, SHAPE, 4, num_boxes=0, seed=6))
    assert finite(losses)


def test_rfa_context_is_added_to_p6_and_carried_to_p7():
    init_default_scope('mmdet')
    torch.manual_seed(0)
    channels = [8, 16, 32, 64]
    inputs = [torch.rand(1, c, 80 // s, 96 // s) for c, s in zip(channels, (1, 2, 4, 8))]
    kwargs = dict(type='AugFPN', in_channels=channels, out_channels=16, start_level=1,
                  add_extra_convs='on_input', num_outs=5)
    with_context = MODELS.build(dict(kwargs, rfa_to_extra_levels=True)).eval()
    without = MODELS.build(dict(kwargs, rfa_to_extra_levels=False)).eval()
    without.load_state_dict(with_context.state_dict())
    with torch.no_grad():
        ours, plain = with_context(inputs), without(inputs)
        context = F.adaptive_avg_pool2d(with_context.rfa(inputs[-1]), 1)
        p6 = with_context.fpn_convs[3](inputs[-1]) + context
        p7 = with_context.fpn_convs[4](p6)
    for level in range(3):
        torch.testing.assert_close(ours[level], plain[level])
    torch.testing.assert_close(ours[3], p6)
    torch.testing.assert_close(ours[4], p7)
    torch.testing.assert_close(ours[3], plain[3] + context)


def test_neck_without_laterals_is_refused_at_build():
    cfg = demo_model_cfg(CONFIGS[0])
    cfg.neck.type = 'FPN'
    cfg.neck.pop('pool_ratios')
    cfg.neck.pop('rfa_to_extra_levels')
    with pytest.raises(ValueError, match="hands out no lateral features.*AugFPN"):
        build(cfg)


@pytest.mark.parametrize('key', ['assigner', 'sampler', 'proposal'])
def test_missing_aux_train_cfg_is_refused(key):
    cfg = demo_model_cfg(CONFIGS[0])
    cfg.aux_head.train_cfg.pop(key)
    with pytest.raises(ValueError, match=f"lacks \\['{key}'\\].*aux_head.train_cfg"):
        build(cfg)


def test_extractor_must_pool_every_level():
    cfg = demo_model_cfg(CONFIGS[0])
    cfg.aux_head.bbox_roi_extractor.type = 'SingleRoIExtractor'
    with pytest.raises(ValueError, match='AllLevelRoIExtractor'):
        build(cfg)


def test_dense_variant_keeps_its_old_name_with_a_warning():
    init_default_scope('mmdet')
    cfg = demo_model_cfg(CONFIGS[0])
    head = dict(cfg.bbox_head, type='ConsistentSupervisionRetinaHead')
    with pytest.warns(DeprecationWarning, match='DenseConsistentSupervisionRetinaHead'):
        MODELS.build(head)
