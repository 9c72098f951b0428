"""Consistent supervision for RetinaNet and the RPN: auxiliary losses on the laterals."""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS
from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR

SHAPE = (128, 160)


def model_cfg(name):
    model = Config.fromfile(str(CONFIG_DIR / name)).model
    if name == 'augfpn_retinanet_r50_demo.py':
        # The config now uses the official R-CNN-like branch; these tests cover the dense
        # variant on the same RetinaNet.
        model.type = 'RetinaNet'
        model.pop('aux_head')
        model.bbox_head.update(type='DenseConsistentSupervisionRetinaHead',
                               aux_loss_weight=0.25, num_lateral_levels=3)
    return model


def build(cfg):
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def test_retinanet_aux_loss_is_lambda_times_the_lateral_loss():
    cfg = model_cfg('augfpn_retinanet_r50_demo.py')
    cfg.bbox_head.aux_loss_weight = 0.5
    model = build(cfg).train()
    data = model.data_preprocessor(make_det_batch(2, SHAPE, 4, seed=0), True)
    feats = model.extract_feat(data['inputs'])
    losses = model.bbox_head.loss(feats, data['data_samples'])
    expected = model.bbox_head.aux_head.loss(feats.laterals, data['data_samples'])
    assert len(losses['aux_loss_cls']) == 3  # M3-M5
    for name in ('loss_cls', 'loss_bbox'):
        for ours, plain in zip(losses[f'aux_{name}'], expected[name]):
            torch.testing.assert_close(ours, 0.5 * plain)


def test_retinanet_predict_is_the_plain_heads():
    with_cs = build(model_cfg('augfpn_retinanet_r50_demo.py')).eval()
    plain_cfg = model_cfg('augfpn_retinanet_r50_demo.py')
    plain_cfg.bbox_head.type = 'RetinaHead'
    for key in ('aux_loss_weight', 'num_lateral_levels'):
        plain_cfg.bbox_head.pop(key)
    plain = build(plain_cfg).eval()
    _, unexpected = plain.load_state_dict(with_cs.state_dict(), strict=False)
    assert unexpected and all(k.startswith('bbox_head.aux_head.') for k in unexpected)
    batch = make_det_batch(1, SHAPE, 4, seed=1)
    with torch.no_grad():
        ours = with_cs(**with_cs.data_preprocessor(batch, False), mode='predict')
        reference = plain(**plain.data_preprocessor(batch, False), mode='predict')
    torch.testing.assert_close(ours[0].pred_instances.scores, reference[0].pred_instances.scores)


def test_rpn_aux_loss_in_two_stage_training():
    model = build(model_cfg('augfpn_rpn_aux_faster_rcnn_r50_demo.py')).train()
    losses = model(**model.data_preprocessor(make_det_batch(2, SHAPE, 4, seed=2), True),
                   mode='loss')
    assert {'aux_loss_rpn_cls', 'aux_loss_rpn_bbox', 'aux_loss_cls', 'loss_rpn_cls'} <= set(losses)
    assert len(losses['aux_loss_rpn_cls']) == 4  # M2-M5


def test_wrong_number_of_laterals_is_reported():
    cfg = model_cfg('augfpn_retinanet_r50_demo.py')
    cfg.bbox_head.num_lateral_levels = 2
    model = build(cfg).train()
    with pytest.raises(ValueError, match='num_lateral_levels is 2'):
        model(**model.data_preprocessor(make_det_batch(1, SHAPE, 4, seed=3), True), mode='loss')


@pytest.mark.parametrize('change, argument', [
    (dict(num_lateral_levels=6), 'num_lateral_levels'),
    (dict(aux_loss_weight=-0.1), 'aux_loss_weight'),
])
def test_bad_config_names_the_argument(change, argument):
    cfg = model_cfg('augfpn_retinanet_r50_demo.py')
    cfg.bbox_head.update(change)
    with pytest.raises(ValueError, match=argument):
        build(cfg)
