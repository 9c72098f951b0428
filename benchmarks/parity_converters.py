"""Full-width converter parity: each original model, random weights, converted, compared.

The tests (tests/tools/test_*2mmplug.py) run thinned models to stay fast; this script
runs the published architectures at full width: mmdet's Cascade R-CNN R50 RFP and
DetectoRS, mmseg's FCN-HRNet W18/W48, mmdet's Faster R-CNN HRNetV2p-W32 (all built from
their toolbox's own configs), and the CenterNet DLA-34 / ucbdrive DLA-Up references of
``mmplug_agg.testing.official_dla``. For each it prints the largest difference of the
raw head outputs, the final predictions and the seconds. Segmentation: float32, whether
the argmax maps are identical. Detection: float32 RPN outputs and the detections
compared as sets (random heads tie many scores, and a rounding difference can flip an
NMS or top-k decision, after which the RoI heads see other proposals), then both models
in float64 (mmcv's NMS made to take float64: ``float64_nms``), where every head output
and every detection is compared in order.

Example (the numbers in docs/model_zoo.md):
    python benchmarks/parity_converters.py --det-shape 400 600 --seg-shape 256 512
    python benchmarks/parity_converters.py --only centernet dlaup34
"""
import argparse
import copy
import time

import torch
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.testing import make_det_batch, make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR
from mmplug_agg.testing.official_dla import CenterNetDLA34, UcbdriveDLAUp, official_state_dict
from mmplug_agg.testing.parity import (calibrate_bn_, detection_diffs, detector_heads,
                                       float64_nms, load_converter, max_abs_diff,
                                       randomize_, record_outputs, unit_gain_)
from mmplug_agg.utils.conversion import SourceState
from mmplug_agg.utils.launch import build_model, load_config

TOOLBOX_PAIRS = {
    'rfp': ('detectors2mmplug', 'convert_detectors', 'mmdet',
            'mmdet::detectors/cascade-rcnn_r50-rfp_1x_coco.py', 'rfp_cascade_rcnn_r50.py'),
    'detectors': ('detectors2mmplug', 'convert_detectors', 'mmdet',
                  'mmdet::detectors/detectors_cascade-rcnn_r50_1x_coco.py',
                  'detectors_cascade_rcnn_r50.py'),
    'hrnet_w18': ('hrnet2mmplug', 'convert_hrnet', 'mmseg',
                  'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py',
                  'hrnetv2_w18_cityscapes_512x1024_80k.py'),
    'hrnet_w48': ('hrnet2mmplug', 'convert_hrnet', 'mmseg',
                  'mmseg::hrnet/fcn_hr48_4xb2-80k_cityscapes-512x1024.py',
                  'hrnetv2_w48_cityscapes_512x1024_80k.py'),
    'hrnetv2p_w32': ('hrnet2mmplug', 'convert_hrnet', 'mmdet',
                     'mmdet::hrnet/faster-rcnn_hrnetv2p-w32-1x_coco.py',
                     'hrnetv2p_w32_faster_rcnn_1x_coco.py'),
}
REFERENCES = ('centernet', 'dlaup34', 'dlaup102')


def convert(converter: str, function: str, state) -> dict:
    source = SourceState(state)
    converted = getattr(load_converter(converter), function)(source)
    assert not source.unused, source.unused
    return converted


def our_model(config: str, scope_cfg_options=None):
    cfg = load_config(str(CONFIG_DIR / config))
    if scope_cfg_options:
        cfg.merge_from_dict(scope_cfg_options)
    model, _ = build_model(cfg)
    return model.eval()


def _predict_both(reference, ours, inputs, data_samples, heads: bool, order_free: bool):
    """Both models' predictions and the raw outputs of their heads (all, or the RPN)."""
    pick = detector_heads if heads else (lambda model: [model.rpn_head])
    with record_outputs(pick(reference)) as raw_ref, record_outputs(pick(ours)) as raw_ours:
        expected = reference.predict(inputs, copy.deepcopy(data_samples))
        got = ours.predict(inputs, copy.deepcopy(data_samples))
    return max_abs_diff(raw_ours, raw_ref), detection_diffs(got, expected, order_free)


def detection_pair(reference, ours, det_shape) -> dict:
    """float32: the RPN's raw outputs and whether the detections agree; float64: all of it.

    In float32 the RoI heads' inputs already depend on NMS and top-k decisions that
    rounding can flip when random weights tie many scores, so their outputs are compared
    in float64, where both sides decide alike (mmcv's NMS made to take float64).
    """
    batch = make_det_batch(1, det_shape, num_classes=80, seed=2)
    data = reference.data_preprocessor(copy.deepcopy(batch), False)
    raw32, d32 = _predict_both(reference, ours, data['inputs'], data['data_samples'], False,
                                order_free=True)
    reference.double()
    ours.double()
    with float64_nms():
        raw64, d64 = _predict_both(reference, ours, data['inputs'].double(),
                                   data['data_samples'], True, order_free=False)
    same32 = d32['same_count'] and d32['same_labels']
    same64 = d64['same_count'] and d64['same_labels']
    return dict(raw=f'{raw32:.2e} (RPN, float32); {raw64:.2e} (RPN and RoI heads, float64)',
                same=f"float64: {d64['count']} detections, same order and labels: {same64}, "
                f"max score diff {d64['score']:.1e}, max box diff {d64['box']:.1e} px; "
                f"float32: same set and labels: {same32}, max score diff {d32['score']:.1e}, "
                f"max box diff {d32['box']:.1e} px ({d32['box_rel']:.1e} of the coordinate)")


def toolbox_pair(name: str, det_shape, seg_shape) -> dict:
    converter, function, scope, theirs, ours_name = TOOLBOX_PAIRS[name]
    init_default_scope(scope)
    cfg = get_config(theirs)
    options = {}
    if scope == 'mmdet':
        # Random heads score all classes alike: keep every box for the comparison.
        options = dict(model=dict(test_cfg=dict(rcnn=dict(score_thr=0.0))))
        cfg.merge_from_dict(options)
    reference = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    randomize_(reference, seed=1)
    if scope == 'mmseg':
        unit_gain_(reference.decode_head.conv_seg)
    ours = our_model(ours_name, options)
    ours.load_state_dict(convert(converter, function, reference.state_dict()), strict=True)
    with torch.no_grad():
        if scope == 'mmdet':
            return detection_pair(reference, ours, det_shape)
        batch = make_seg_batch(1, seg_shape, num_classes=19, seed=2)
        with record_outputs([reference.decode_head.conv_seg]) as raw_ref, \
                record_outputs([ours.decode_head.conv_seg]) as raw_ours:
            expected = reference.test_step(copy.deepcopy(batch))[0]
            got = ours.test_step(copy.deepcopy(batch))[0]
        same = torch.equal(got.pred_sem_seg.data, expected.pred_sem_seg.data)
        return dict(raw=f'{max_abs_diff(raw_ours, raw_ref):.2e}', same=f'argmax identical: {same}')


def reference_pair(name: str, det_shape, seg_shape) -> dict:
    if name == 'centernet':
        torch.manual_seed(0)
        reference = CenterNetDLA34().eval()
        randomize_(reference, seed=3)
        unit_gain_(reference.hm[2], seed=1)
        ours = our_model('dla34_centernet_official_coco.py')
        ours.load_state_dict(convert('centernet2mmplug', 'convert_centernet',
                                     official_state_dict(reference)), strict=True)
        # CenterNet's DLA needs sides divisible by 32 (its test pads to (h | 31) + 1).
        shape = tuple(-(-side // 32) * 32 for side in det_shape)
        batch = make_det_batch(1, shape, num_classes=80, seed=4)
        head = ours.bbox_head
        with torch.no_grad(), record_outputs([head.heatmap_head, head.wh_head,
                                              head.offset_head]) as raw:
            data = ours.data_preprocessor(copy.deepcopy(batch), False)
            out = reference(data['inputs'])
            ours.test_step(copy.deepcopy(batch))
            raw32 = max_abs_diff(raw, [out['hm'], out['wh'], out['reg']])
            # Detections in float64 (near-equal random peaks may swap order in float32):
            # CenterNet's outputs through the same decoding as ours (sigmoid, 3x3 peaks,
            # top 100), as tests/tools/test_centernet2mmplug.py does.
            ours.double()
            reference.double()
            inputs = data['inputs'].double()
            got = ours.predict(inputs, copy.deepcopy(data['data_samples']), rescale=True)
            out = reference(inputs)
            metas = [sample.metainfo for sample in data['data_samples']]
            expected = head.predict_by_feat([out['hm'].sigmoid()], [out['wh']], [out['reg']],
                                            metas, rescale=True)
        g, e = got[0].pred_instances, expected[0]
        same = len(g) == len(e) and torch.equal(g.labels, e.labels)
        return dict(raw=f'{raw32:.2e} (float32)',
                    same=f'float64: {len(g)} detections, same order and labels: {same}, '
                    f'max score diff {(g.scores - e.scores).abs().max():.1e}, '
                    f'max box diff {(g.bboxes - e.bboxes).abs().max():.1e} px')
    arch = 'dla34' if name == 'dlaup34' else 'dla102'
    torch.manual_seed(0)
    reference = UcbdriveDLAUp(arch).eval()
    randomize_(reference, seed=5)
    unit_gain_(reference.fc[0], seed=2)
    calibrate_bn_(reference, lambda model: model(torch.randn(2, 3, *seg_shape)))
    config = ('dla34up_cityscapes_512x1024_80k.py' if arch == 'dla34' else
              'dla102up_cityscapes_832_poly.py')
    ours = our_model(config)
    ours.load_state_dict(convert('dlaup2mmplug', 'convert_dlaup', official_state_dict(reference)),
                         strict=True)
    batch = make_seg_batch(1, seg_shape, num_classes=19, seed=3)
    with torch.no_grad(), record_outputs([ours.decode_head.conv_seg]) as raw:
        data = ours.data_preprocessor(copy.deepcopy(batch), False)
        log_probs, logits = reference(data['inputs'])
        got = ours.test_step(copy.deepcopy(batch))[0]
    same = torch.equal(got.pred_sem_seg.data[0], log_probs[0].argmax(0))
    return dict(raw=f'{max_abs_diff(raw, logits):.2e}', same=f'argmax identical: {same}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--only', nargs='+', choices=[*TOOLBOX_PAIRS, *REFERENCES],
                        default=[*TOOLBOX_PAIRS, *REFERENCES])
    parser.add_argument('--det-shape', nargs=2, type=int, default=(400, 600),
                        help='detection image; the default is padded to 416 x 608, whose '
                        'sides are not multiples of 64, so the stride-64 level of HRFPN '
                        'and HRNetV2pNeck has floor-rounded sizes')
    parser.add_argument('--seg-shape', nargs=2, type=int, default=(256, 512))
    args = parser.parse_args()
    print('| model | max abs diff, raw head outputs | final predictions | seconds |')
    print('| --- | --- | --- | --- |')
    for name in args.only:
        start = time.perf_counter()
        run = toolbox_pair if name in TOOLBOX_PAIRS else reference_pair
        result = run(name, tuple(args.det_shape), tuple(args.seg_shape))
        print(f"| {name} | {result['raw']} | {result['same']} | "
              f'{time.perf_counter() - start:.0f} |', flush=True)


if __name__ == '__main__':
    main()
