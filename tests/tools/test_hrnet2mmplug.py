"""tools/model_converters/hrnet2mmplug.py: mmseg FCN-HRNet and mmdet HRNet Faster R-CNN, end to end.

Each original model is built from its toolbox's own config (``mmseg::hrnet/fcn_hr18...``,
``mmdet::hrnet/faster-rcnn_hrnetv2p-w32...``), thinned to one block per branch and narrow
branches (the key layout is unchanged), given random weights and BN statistics and
saved; the converted file loads strictly into our config thinned the same way, which
must then predict what the original predicts on the same odd-sized image.
"""
import copy

import pytest
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

from mmplug_agg.testing import make_det_batch, make_seg_batch, tiny_hrnet_extra
from mmplug_agg.testing.cli import CONFIG_DIR, last_line
from mmplug_agg.testing.parity import (assert_same_detections, assert_same_segmentation,
                                       detector_heads, load_converter, max_abs_diff,
                                       randomize_, record_outputs, run_converter,
                                       unit_gain_)
from mmplug_agg.utils.conversion import SourceState
from mmplug_agg.utils.launch import UserFacingError

hrnet2mmplug = load_converter('hrnet2mmplug')

WIDTHS = [8, 16, 32, 64]
SEG = ('mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py',
       'hrnetv2_w18_cityscapes_512x1024_80k.py')
DET = ('mmdet::hrnet/faster-rcnn_hrnetv2p-w32-1x_coco.py', 'hrnetv2p_w32_faster_rcnn_1x_coco.py')


def thin(cfg: Config, task: str) -> Config:
    backbone = dict(extra=tiny_hrnet_extra(WIDTHS), init_cfg=None)
    if task == 'seg':
        cfg.merge_from_dict(dict(model=dict(
            pretrained=None, backbone=backbone,
            decode_head=dict(in_channels=WIDTHS, channels=sum(WIDTHS)))))
    else:
        cfg.merge_from_dict(dict(model=dict(
            backbone=backbone, neck=dict(in_channels=WIDTHS, out_channels=32),
            rpn_head=dict(in_channels=32, feat_channels=32),
            roi_head=dict(bbox_roi_extractor=dict(out_channels=32),
                          bbox_head=dict(in_channels=32, fc_out_channels=64)),
            test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(score_thr=0.0)))))
    return cfg


def build(cfg: Config, scope: str):
    init_default_scope(scope)
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def convert_random_original(task, tmp_path, capsys):
    """The thinned original with random weights, converted; returns (original, ours)."""
    theirs_name, ours_name = SEG if task == 'seg' else DET
    scope = 'mmseg' if task == 'seg' else 'mmdet'
    reference = build(thin(get_config(theirs_name), task), scope)
    reference.init_weights()
    randomize_(reference, seed=7)
    if task == 'seg':
        unit_gain_(reference.decode_head.conv_seg)
    src, dst, ours_cfg = tmp_path / 'original.pth', tmp_path / 'ours.pth', tmp_path / 'ours.py'
    torch.save({'meta': {}, 'state_dict': reference.state_dict()}, src)
    thin(Config.fromfile(CONFIG_DIR / ours_name), task).dump(str(ours_cfg))
    run_converter(hrnet2mmplug, src, dst, '--config', ours_cfg)
    log = capsys.readouterr().out
    assert 'unmapped source keys: none' in log and 'missing keys: none' in log
    assert 'unexpected keys: none' in log and 'shape mismatches: none' in log
    ours = build(Config.fromfile(ours_cfg), scope)
    ours.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    return reference.eval(), ours.eval()


def test_mmseg_fcn_hrnet_segments_as_mmseg_does(tmp_path, capsys):
    reference, ours = convert_random_original('seg', tmp_path, capsys)
    assert type(ours.decode_head).__name__ == 'HRNetV2Head'
    batch = make_seg_batch(1, (97, 131), num_classes=19, seed=2)
    # The classifier's logits at branch-0 resolution (predict calls the head's forward
    # directly, so the hook sits on its last layer).
    with torch.no_grad(), record_outputs([reference.decode_head.conv_seg]) as raw_ref, \
            record_outputs([ours.decode_head.conv_seg]) as raw_ours:
        expected = reference.test_step(copy.deepcopy(batch))
        got = ours.test_step(copy.deepcopy(batch))
    assert max_abs_diff(raw_ours, raw_ref) < 1e-4
    assert_same_segmentation(got, expected, atol=1e-4)
    assert got[0].pred_sem_seg.data.unique().numel() > 1  # a map, not a constant


def test_mmdet_hrnet_faster_rcnn_detects_as_mmdet_does(tmp_path, capsys):
    reference, ours = convert_random_original('det', tmp_path, capsys)
    assert type(ours.neck).__name__ == 'HRNetV2pNeck' and ours.neck.pooling_size == 'floor'
    # 200 x 296 is padded to 224 x 320 (pad_size_divisor=32): the stride-4 map is 56 x 80,
    # so P6 has 56 / 16 = 3.5 rows, where HRFPN floors (3) and stride-2 convs would ceil.
    batch = make_det_batch(1, (200, 296), num_classes=80, seed=2)
    with torch.no_grad(), record_outputs(detector_heads(reference)) as raw_ref, \
            record_outputs(detector_heads(ours)) as raw_ours, \
            record_outputs([reference.neck]) as ref_levels:
        expected = reference.test_step(copy.deepcopy(batch))
        got = ours.test_step(copy.deepcopy(batch))
    assert tuple(ref_levels[0][4].shape[-2:]) == (3, 5)
    assert len(raw_ref) == 2 and max_abs_diff(raw_ours, raw_ref) < 1e-4
    assert assert_same_detections(got, expected, atol=1e-4) == 100

    # The image does tell the modes apart: ceil-sized levels give another P6.
    ours.neck.pooling_size = 'ceil'
    with torch.no_grad(), record_outputs([ours.neck]) as ceil_levels:
        ours.test_step(copy.deepcopy(batch))
    assert tuple(ceil_levels[0][4].shape[-2:]) == (4, 5)


def test_a_config_whose_neck_does_not_floor_gets_a_note(tmp_path):
    ours = Config.fromfile(CONFIG_DIR / DET[1])
    assert hrnet2mmplug.neck_note(str(CONFIG_DIR / DET[1])) is None
    ours.merge_from_dict(dict(model=dict(neck=dict(pooling_size='ceil'))))
    ours.dump(str(tmp_path / 'ceil.py'))
    assert "set pooling_size='floor'" in hrnet2mmplug.neck_note(str(tmp_path / 'ceil.py'))


@pytest.mark.parametrize('width,config', [(270, 'hrnetv2_w18_cityscapes_512x1024_80k.py'),
                                          (720, 'hrnetv2_w48_cityscapes_512x1024_80k.py')])
def test_the_target_config_follows_the_width(width, config):
    source = SourceState({k: torch.zeros(width, width, 1, 1) for k in hrnet2mmplug.SEG_KEYS})
    assert hrnet2mmplug.default_config(source).endswith(config)
    det = SourceState({k: torch.zeros(256, 270, 1, 1) for k in hrnet2mmplug.DET_KEYS},
                      name="'w18.pth'")
    with pytest.raises(UserFacingError, match='pass --config'):
        hrnet2mmplug.default_config(det)


def test_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / 'pspnet.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1),
                               'decode_head.bottleneck.conv.weight': torch.zeros(1)}}, src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(hrnet2mmplug, src, tmp_path / 'out.pth')
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        "error: 'pspnet.pth' is neither an mmseg FCN-HRNet (fcn_hr*) nor an mmdet HRNet "
        'detector with HRFPN checkpoint: it has no decode_head.convs.0.conv.weight or '
        'neck.reduction_conv.conv.weight')
    assert not (tmp_path / 'out.pth').exists()
