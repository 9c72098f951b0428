"""effdet -> mmplug_agg EfficientDet conversion: end-to-end parity, the tool, the scheme.

Parity (``mmplug_agg.testing.effdet_parity``): effdet's model with random weights, BN
statistics, redundant biases and fusion weights, converted and loaded strictly into our
config, predicts what effdet predicts on the same image: raw head outputs and the final
detections of effdet's ``DetBenchPredict`` against our ``_hardnms`` post-processing, in
float64 (the same function: identical detections in the same order) and float32 (within
float32's accumulation error; detections compared so that exact or near score ties cannot
decide, ``match_detections``). D0 at 256 px here (TF SAME padding acts on every even-sized
level); D0 and D3 at their full sizes in ``benchmarks/check_effdet_conversion.py``.
"""
import runpy
import sys

import pytest
import torch
from mmengine.runner import CheckpointLoader

import mmplug_agg  # noqa: F401
from mmplug_agg.testing.cli import TOOLS_DIR, last_line
from mmplug_agg.testing.effdet_parity import (build_effdet, build_ours, check_effdet_parity,
                                              match_detections)
from mmplug_agg.utils.conversion import SourceState
from mmplug_agg.utils.effdet_conversion import (COCO_CATEGORY_IDS, EFFDET_ASPECTS,
                                                anchor_permutation, convert_effdet)

effdet = pytest.importorskip('effdet')
from effdet.anchors import Anchors  # noqa: E402

CONVERTER = TOOLS_DIR / 'model_converters' / 'effdet2mmplug.py'
SIZE = 256


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')


def run_converter(args, monkeypatch, capsys):
    """The tool as ``python tools/model_converters/effdet2mmplug.py ARGS`` would run it, in
    this process (a subprocess would spend most of the test importing torch and mmdet)."""
    monkeypatch.setattr(sys, 'argv', [str(CONVERTER), *map(str, args)])
    code = 0
    try:
        runpy.run_path(str(CONVERTER), run_name='__main__')
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize('name, config', [
    ('tf_efficientdet_d0', 'efficientdet_d0_bifpn_coco.py'),  # TF port: SAME padding, biases
    ('efficientdet_d0', 'efficientdet_d0_bifpn_coco_effdet.py'),  # symmetric, BN eps 1e-5
])
def test_converted_model_predicts_what_effdet_predicts(name, config):
    result = check_effdet_parity(name, config, SIZE, dtypes=(torch.float32, torch.float64))
    # float64: the same function up to rounding, so the same detections in the same order.
    assert result['float64_cls_max_abs'] < 1e-9 and result['float64_box_max_abs'] < 1e-9, result
    assert result['float64_det_matched'] == 2 * 100, result
    assert result['float64_det_same_order'] == 1.0, result
    assert result['float64_det_score_max_abs'] < 1e-6, result
    # float32, what users run: accumulation order differs, within float32's own error.
    assert result['cls_max_abs'] < 1e-4 and result['box_max_abs'] < 1e-4, result
    assert result['max_abs_delta'] < 4.0, result  # below mmdet's dw/dh clamp: same decoding
    assert result['num_dets'] == 2 * 100, result  # 2 images, 100 detections each
    assert result['det_labels_equal'] == 1.0, result
    assert result['det_inversions_beyond_tol'] == 0, result
    assert result['det_score_max_abs'] < 1e-4, result
    # Boxes agree to float32 rounding of coordinates up to ~1000 px (largest anchors).
    assert result['det_box_max_abs'] < 1e-2, result


def test_detection_matching_forgives_ties_only():
    boxes = torch.tensor([[0., 0., 10., 10.], [20., 20., 40., 40.], [50., 0., 60., 30.],
                          [0., 50., 30., 60.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 2, 3, 4])

    def match(b, s, lab):
        return match_detections(boxes, scores, labels, b, s, lab, score_tol=1e-4, box_tol=1e-2)

    same = match(boxes + 1e-3, scores + 5e-5, labels)
    assert same['matched'] == 4 and same['unmatched'] == 0 and same['same_order'] == 1.0
    # Two scores within the tolerance may come out in either order.
    near = scores.clone()
    near[2] = 0.80005
    ref_near = match_detections(boxes, near, labels, boxes[[0, 2, 1, 3]], near[[0, 2, 1, 3]],
                                labels[[0, 2, 1, 3]], score_tol=1e-4, box_tol=1e-2)
    assert ref_near['matched'] == 4 and ref_near['same_order'] == 0.0
    assert ref_near['inversions'] == 1 and ref_near['inversions_beyond_tol'] == 0
    # Scores 0.1 apart may not.
    swapped = match(boxes[[0, 2, 1, 3]], scores[[0, 2, 1, 3]], labels[[0, 2, 1, 3]])
    assert swapped['matched'] == 4 and swapped['inversions_beyond_tol'] == 1
    # NMS kept the other of two overlapping same-class boxes with near-equal scores: a tie.
    flipped_boxes = boxes.clone()
    flipped_boxes[1] = torch.tensor([21., 21., 41., 41.])
    flip = match(flipped_boxes, scores + torch.tensor([0, 3e-5, 0, 0]), labels)
    assert flip['unmatched'] == 2 and flip['unexplained'] == 0
    # A wrong label or a far-off score is a real disagreement.
    wrong = match(boxes, scores, torch.tensor([1, 2, 5, 4]))
    assert wrong['unmatched'] == 2 and wrong['unexplained'] == 2
    off = match(boxes, scores - torch.tensor([0, 0.01, 0, 0]), labels)
    assert off['unexplained'] == 2


def test_80_class_config_keeps_the_coco_rows():
    result = check_effdet_parity('tf_efficientdet_d0', 'efficientdet_d0_bifpn_coco.py', SIZE,
                                 num_classes=80, seed=3)
    assert result['cls_max_abs'] < 1e-4 and result['box_max_abs'] < 1e-4, result
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[:12][-1] == 13


def test_odd_feature_sizes_match_effdet():
    # 200 px: P3-P7 are 25, 13, 7, 4, 2 pixels, so SAME padding is asymmetric in the
    # backbone's stride-2 convs and the BiFPN's pools, and nearest upsampling uneven.
    # Raw outputs only (80 classes): effdet places anchors at image_size / feature size
    # (non-integer strides here), mmdet at the integer strides, so detections agree only
    # at sizes divisible by 128, which every config pads to.
    result = check_effdet_parity('tf_efficientdet_d0', 'efficientdet_d0_bifpn_coco.py', 200,
                                 num_classes=80, dtypes=(torch.float32, torch.float64))
    assert result['float64_cls_max_abs'] < 1e-9 and result['float64_box_max_abs'] < 1e-9, result
    assert result['cls_max_abs'] < 1e-4 and result['box_max_abs'] < 1e-4, result


def test_anchor_generator_reproduces_effdet_anchors():
    model = build_ours('efficientdet_d0_bifpn_coco.py', 90)
    generator = model.bbox_head.prior_generator
    sizes = [(SIZE // s, SIZE // s) for s in (8, 16, 32, 64, 128)]
    ours = torch.cat(generator.grid_priors(sizes, device='cpu'))
    config = effdet.get_efficientdet_config('tf_efficientdet_d0')
    config.image_size = (SIZE, SIZE)
    theirs = Anchors.from_config(config).boxes[:, [1, 0, 3, 2]]  # yxyx -> xyxy
    # Ours per location: shape-major; effdet's: octave-major. Same boxes once permuted.
    perm = torch.tensor(anchor_permutation(generator.aspects, 3))
    theirs = theirs.view(-1, 9, 4)[:, perm].reshape(-1, 4)
    assert perm.tolist() == [1, 4, 7, 0, 3, 6, 2, 5, 8]
    assert (ours - theirs).abs().max() < 1e-4


def test_mmdet_ratios_are_refused_for_exact_anchors():
    with pytest.raises(Exception, match='EfficientDetAnchorGenerator'):
        anchor_permutation([(2**0.5, 2**-0.5), (1.0, 1.0), (2**-0.5, 2**0.5)], 3)
    assert anchor_permutation([(1.4, 0.7), (1.0, 1.0), (0.7, 1.4)], 3, EFFDET_ASPECTS)[0] == 1


def test_tool_converts_strictly_and_logs_the_checksum(tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / 'tf_d0.pth', tmp_path / 'out.pth'
    model = build_effdet('tf_efficientdet_d0', SIZE)
    torch.save(model.state_dict(), src)
    code, out, err = run_converter([src, dst, '--arch', 'tf_efficientdet_d0'], monkeypatch,
                                   capsys)
    assert code == 0, err
    assert 'sha256: ' in out and 'unmapped source keys: none' in out
    assert 'missing keys: none' in out and 'unexpected keys: none' in out
    checkpoint = torch.load(dst, map_location='cpu', weights_only=False)
    assert set(checkpoint) == {'meta', 'state_dict'}
    assert len(checkpoint['meta']['source_sha256']) == 64
    ours = build_ours('efficientdet_d0_bifpn_coco.py', 80)
    ours.load_state_dict(checkpoint['state_dict'], strict=True)
    expected = convert_effdet(SourceState(model.state_dict()), num_classes=80)
    for key, value in expected.items():
        assert torch.equal(checkpoint['state_dict'][key], value), key


def test_tool_refuses_another_architecture(tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / 'tf_d0.pth', tmp_path / 'out.pth'
    torch.save(effdet.create_model('tf_efficientdet_d0', pretrained_backbone=False).state_dict(),
               src)
    code, _, err = run_converter([src, dst, '--arch', 'tf_efficientdet_d1'], monkeypatch, capsys)
    assert code == 1
    line = last_line(err)
    assert line.startswith('error: the checkpoint (') and 'efficientdet_d1_bifpn_coco.py' in line
    assert line.endswith('nothing written') and not dst.exists()
    # An effdet checkpoint of the other padding is refused too, naming the configs to use.
    code, _, err = run_converter([src, dst, '--arch', 'efficientdet_d0'], monkeypatch, capsys)
    assert code == 1
    assert 'TensorFlow port' in last_line(err) and not dst.exists()
    missing = tmp_path / 'nope.pth'
    code, _, err = run_converter([missing, dst, '--arch', 'tf_efficientdet_d0'], monkeypatch,
                                 capsys)
    assert code == 1 and last_line(err) == f"error: checkpoint '{missing}' does not exist"


def test_effdet_scheme_converts_on_load(monkeypatch):
    source = build_effdet('tf_efficientdet_d0', 512, seed=5)

    def fake_pretrained(model, url, *args, **kwargs):  # no download here
        assert url.endswith('.pth')
        model.load_state_dict(source.state_dict())

    monkeypatch.setattr(effdet.factory, 'load_pretrained', fake_pretrained)
    state = CheckpointLoader.load_checkpoint('effdet://tf_efficientdet_d0')
    ours = build_ours('efficientdet_d0_bifpn_coco.py', 80)
    ours.load_state_dict(state, strict=True)
    assert torch.equal(state['bbox_head.reg_pred.depthwise.weight'],
                       source.state_dict()['box_net.predict.conv_dw.weight'])
    with pytest.raises(ValueError, match='converts the effdet models'):
        CheckpointLoader.load_checkpoint('effdet://tf_efficientdet_d0_ap')


@pytest.mark.parametrize('size', [(64, 64), (33, 51), (2, 1)])
def test_same_pooling_is_timms_tensorflow_pooling(size):
    from timm.layers import create_pool2d

    from mmplug_agg.models.necks.bifpn import max_pool_down
    x = torch.randn(2, 8, *size)
    theirs = create_pool2d('max', kernel_size=3, stride=2, padding='same')(x)
    torch.testing.assert_close(max_pool_down(x, same=True), theirs, rtol=0, atol=0)
    symmetric = create_pool2d('max', kernel_size=3, stride=2, padding='')(x)
    torch.testing.assert_close(max_pool_down(x), symmetric, rtol=0, atol=0)


def test_bad_pool_padding_names_the_argument():
    from mmplug_agg.models.necks import BiFPN
    with pytest.raises(ValueError, match="pool_padding='tf'.*'symmetric', 'same'"):
        BiFPN(in_channels=[8, 16], out_channels=8, num_outs=3, pool_padding='tf')
