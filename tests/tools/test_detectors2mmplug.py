"""tools/model_converters/detectors2mmplug.py: mmdet's DetectoRS/RFP Cascade R-CNN, end to end.

mmdet's own model is built from mmdet's own config (``mmdet::detectors/...``), thinned to
an eighth of the widths (the key layout is unchanged), given random weights and BN
statistics, saved as mmdet saves a checkpoint and converted by the tool's ``main``; our
config, thinned the same way, loads the result with ``strict=True`` and must predict what
mmdet predicts on the same image: raw cascade head outputs and final detections.
"""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.registry import init_default_scope

from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR, last_line
from mmplug_agg.testing.parity import (assert_same_detections, detector_heads, max_abs_diff,
                                       load_converter, randomize_, record_outputs,
                                       run_converter)
from mmplug_agg.utils.conversion import SourceState, sha256sum
from mmplug_agg.utils.launch import UserFacingError

detectors2mmplug = load_converter('detectors2mmplug')

BASE = 8  # ResNet-50 with base width 8: stage widths 32-256, FPN and heads 32 wide
WIDTHS = [BASE * 4 * 2**i for i in range(4)]
HEADS = dict(
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(bbox_roi_extractor=dict(out_channels=32)),
    # Keep every box so that the comparison sees many detections; few proposals for speed.
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(score_thr=0.0)))


def thin_heads(cfg: Config) -> Config:
    cfg.merge_from_dict(dict(model=copy.deepcopy(HEADS)))
    for stage in cfg.model.roi_head.bbox_head:
        stage.update(in_channels=32, fc_out_channels=64)
    return cfg
PAIRS = {
    'rfp': ('mmdet::detectors/cascade-rcnn_r50-rfp_1x_coco.py', 'rfp_cascade_rcnn_r50.py'),
    'detectors': ('mmdet::detectors/detectors_cascade-rcnn_r50_1x_coco.py',
                  'detectors_cascade_rcnn_r50.py'),
}
# An odd size (padded to 160 x 192); SAC's deformable convs are slow on a CPU, and its
# reflect padding needs stride-32 maps of 3 px at least: 96 x 128 for DetectoRS.
IMAGE_SHAPES = {'rfp': (133, 171), 'detectors': (96, 128)}


def thin_mmdet_cfg(name: str) -> Config:
    cfg = get_config(PAIRS[name][0])
    cfg.merge_from_dict(dict(model=dict(
        backbone=dict(base_channels=BASE, init_cfg=None),
        neck=dict(in_channels=WIDTHS, out_channels=32, aspp_out_channels=8,
                  rfp_backbone=dict(base_channels=BASE, rfp_inplanes=32, pretrained=None)))))
    return thin_heads(cfg)


def thin_ours_cfg(name: str) -> Config:
    cfg = Config.fromfile(CONFIG_DIR / PAIRS[name][1])
    cfg.merge_from_dict(dict(model=dict(
        backbone=dict(backbone=dict(base_channels=BASE, init_cfg=None),
                      neck=dict(in_channels=WIDTHS, out_channels=32), aspp_out_channels=8))))
    return thin_heads(cfg)


def build(cfg: Config):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    return MODELS.build(cfg.model)


def mmdet_checkpoint(name: str, path, seed: int):
    reference = build(thin_mmdet_cfg(name))
    reference.init_weights()
    randomize_(reference, seed=seed)
    # mmdet's published files: meta + state_dict (+ optimizer for some); meta is plain.
    torch.save({'meta': {'mmdet_version': '2.x', 'CLASSES': ['x'] * 80},
                'state_dict': reference.state_dict()}, path)
    return reference.eval()


@pytest.mark.parametrize('name', list(PAIRS))
def test_converted_checkpoint_predicts_what_mmdet_predicts(name, tmp_path, capsys):
    src, dst = tmp_path / f'{name}_mmdet.pth', tmp_path / f'{name}_mmplug.pth'
    reference = mmdet_checkpoint(name, src, seed=len(name))
    ours_cfg = tmp_path / 'ours.py'
    thin_ours_cfg(name).dump(str(ours_cfg))
    run_converter(detectors2mmplug, src, dst, '--config', ours_cfg)
    log = capsys.readouterr().out
    assert 'unmapped source keys: none' in log and 'missing keys: none' in log
    assert f'sha256: {sha256sum(str(src))}' in log

    checkpoint = torch.load(dst, map_location='cpu', weights_only=True)
    assert set(checkpoint) == {'meta', 'state_dict'}
    ours = build(thin_ours_cfg(name))
    ours.load_state_dict(checkpoint['state_dict'], strict=True)
    ours.eval()
    assert len(checkpoint['state_dict']) == len(reference.state_dict())

    batch = make_det_batch(1, IMAGE_SHAPES[name], num_classes=80, seed=1)
    with torch.no_grad(), record_outputs(detector_heads(reference)) as raw_ref, \
            record_outputs(detector_heads(ours)) as raw_ours:
        dets_ref = reference.test_step(copy.deepcopy(batch))
        dets_ours = ours.test_step(copy.deepcopy(batch))
    # RPN scores and deltas per level, then (cls_score, bbox_pred) of each cascade stage.
    assert len(raw_ours) == len(raw_ref) == 4
    assert max_abs_diff(raw_ours, raw_ref) < 1e-4
    assert assert_same_detections(dets_ours, dets_ref, atol=1e-4) == 100


def test_sac_checkpoint_picks_the_detectors_config_and_htc_is_refused():
    sac = SourceState({'backbone.layer2.0.conv2.switch.weight': torch.zeros(1)})
    assert detectors2mmplug.default_config(sac).endswith('detectors_cascade_rcnn_r50.py')
    keys = ['backbone.conv1.weight', 'neck.rfp_aspp.aspp.0.weight', 'neck.rfp_weight.weight',
            'neck.rfp_modules.0.conv1.weight', 'roi_head.mask_head.0.conv_logits.weight']
    with pytest.raises(UserFacingError, match='HTC checkpoint'):
        detectors2mmplug.convert_detectors(SourceState({k: torch.zeros(1) for k in keys}))


def test_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / 'faster.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1),
                               'neck.lateral_convs.0.conv.weight': torch.zeros(1)}}, src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(detectors2mmplug, src, tmp_path / 'out.pth')
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        "error: 'faster.pth' is not a mmdet DetectoRS/RFP (DetectoRS_ResNet + RFP) checkpoint: "
        'it has no neck.rfp_aspp.aspp.0.weight, neck.rfp_weight.weight, '
        'neck.rfp_modules.0.conv1.weight')
    assert not (tmp_path / 'out.pth').exists()
