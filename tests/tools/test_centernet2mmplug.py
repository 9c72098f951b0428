"""tools/model_converters/centernet2mmplug.py: CenterNet's official DLA-34, end to end.

CenterNet (DCNv2 built for old CUDA) cannot be installed here. The reference is
``mmplug_agg.testing.official_dla.CenterNetDLA34``: CenterNet's ``DLASeg`` written from
``pose_dla_dcn.py`` with its module names, so its state dict has the official key
layout; the trunk tensors the official DLA stores and timm does not (``base.fc``, the
unused projections) are added. Its deformable convs run mmcv's op, which the first test
checks against DCNv2's sampling as written in DCNv2's CUDA kernel.
"""
import copy

import pytest
import torch

from mmplug_agg.testing import make_det_batch
from mmplug_agg.testing.cli import CONFIG_DIR, last_line
from mmplug_agg.testing.official_dla import CenterNetDLA34, DCNv2Layout, official_state_dict
from mmplug_agg.testing.parity import (load_converter, max_abs_diff, randomize_, record_outputs,
                                       run_converter, unit_gain_)
from mmplug_agg.utils.conversion import SourceState, load_state_dict
from mmplug_agg.utils.launch import build_model, load_config

centernet2mmplug = load_converter('centernet2mmplug')
CONFIG = CONFIG_DIR / 'dla34_centernet_official_coco.py'


def dcnv2_reference(x, offset, mask, weight, bias):
    """DCNv2's modulated deformable 3x3 conv (stride 1, padding 1, one group), directly.

    Tap k = 3 i + j samples input row ``h - 1 + i + offset[2k]`` and column
    ``w - 1 + j + offset[2k + 1]`` bilinearly, corners outside the map count as zero,
    and the sample is scaled by ``mask[k]`` (``dmcn_im2col`` in DCNv2's CUDA code).
    """
    n, c, height, width = x.shape
    rows = torch.arange(height, dtype=x.dtype).view(1, height, 1)
    cols = torch.arange(width, dtype=x.dtype).view(1, 1, width)
    samples = []
    for k in range(9):
        i, j = divmod(k, 3)
        h = rows - 1 + i + offset[:, 2 * k]
        w = cols - 1 + j + offset[:, 2 * k + 1]
        h0, w0 = h.floor(), w.floor()
        value = torch.zeros(n, c, height, width, dtype=x.dtype)
        for dh, dw in ((0, 0), (0, 1), (1, 0), (1, 1)):
            hh, ww = h0 + dh, w0 + dw
            weight_hw = (1 - (h - hh).abs()) * (1 - (w - ww).abs())
            inside = (hh >= 0) & (hh < height) & (ww >= 0) & (ww < width)
            index = (hh.clamp(0, height - 1) * width + ww.clamp(0, width - 1)).long()
            gathered = x.flatten(2).gather(2, index.flatten(1)[:, None].expand(n, c, -1))
            value += gathered.view(n, c, height, width) * (weight_hw * inside)[:, None]
        samples.append(value * mask[:, k:k + 1])
    columns = torch.stack(samples, dim=2)  # n, c, 9, h, w
    return torch.einsum('nckhw,ock->nohw', columns, weight.flatten(2)) + bias.view(1, -1, 1, 1)


def test_dcnv2_offset_mask_layout_is_mmcvs():
    """DCNv2's conv_offset_mask order (o1, o2, mask) means the same to mmcv's op."""
    torch.manual_seed(0)
    dcn = DCNv2Layout(4, 5)
    with torch.no_grad():
        dcn.conv_offset_mask.weight.normal_(0, 0.5)
        dcn.conv_offset_mask.bias.normal_(0, 1.0)  # shifts of a pixel or more, many fractional
        dcn.bias.normal_()
    x = torch.randn(2, 4, 7, 9)
    first, second, mask = torch.chunk(dcn.conv_offset_mask(x), 3, dim=1)
    offset = torch.cat([first, second], dim=1)
    expected = dcnv2_reference(x.double(), offset.double(), mask.sigmoid().double(),
                               dcn.weight.double(), dcn.bias.double())
    with torch.no_grad():
        got = dcn(x)
    assert offset.abs().max() > 1.5  # some samples leave the map
    assert (got.double() - expected).abs().max().item() < 1e-5
    # A swapped (dx, dy) layout would not match: the check can tell them apart.
    swapped = offset.view(2, 9, 2, 7, 9).flip(2).reshape_as(offset)
    wrong = dcnv2_reference(x.double(), swapped.double(), mask.sigmoid().double(),
                            dcn.weight.double(), dcn.bias.double())
    assert (got.double() - wrong).abs().max().item() > 1e-2


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """A random CenterNet DLA-34 in the official layout, saved as CenterNet saves it."""
    tmp_path = tmp_path_factory.mktemp('centernet')
    torch.manual_seed(0)
    reference = CenterNetDLA34().eval()
    randomize_(reference, seed=3)
    unit_gain_(reference.hm[2], seed=1)  # spread the heatmap beyond its random bias
    src, dst = tmp_path / 'ctdet_coco_dla_2x.pth', tmp_path / 'centernet_mmplug.pth'
    torch.save({'epoch': 230, 'state_dict': official_state_dict(reference)}, src)
    return reference, src, dst


def test_official_layout_spot_checks(converted):
    """Keys and shapes read from pose_dla_dcn.py (DLASeg, DLAUp, IDAUp, DCN)."""
    _, src, _ = converted
    state = load_state_dict(str(src))
    shapes = {
        'base.base_layer.0.weight': (16, 3, 7, 7),
        'base.level3.project.0.weight': (128, 64, 1, 1),  # built, never used
        'base.fc.weight': (1000, 512, 1, 1),
        'dla_up.ida_0.proj_1.conv.weight': (256, 512, 3, 3),
        'dla_up.ida_0.proj_1.conv.bias': (256, ),
        'dla_up.ida_0.proj_1.conv.conv_offset_mask.weight': (27, 512, 3, 3),
        'dla_up.ida_0.proj_1.actf.0.running_var': (256, ),
        'dla_up.ida_0.up_1.weight': (256, 1, 4, 4),
        'dla_up.ida_2.node_3.conv.weight': (64, 64, 3, 3),
        'ida_up.proj_2.conv.weight': (64, 256, 3, 3),
        'ida_up.up_2.weight': (64, 1, 8, 8),
        'hm.0.weight': (256, 64, 3, 3),
        'hm.2.bias': (80, ),
        'wh.2.weight': (2, 256, 1, 1),
        'reg.2.weight': (2, 256, 1, 1),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert 'dla_up.ida_0.proj_0.conv.weight' not in state  # CenterNet projects inputs 1..
    assert not any(k.startswith('ida_up.proj_3') for k in state)  # last_level=5: 3 inputs


def test_every_original_key_is_used_exactly_once(converted):
    _, src, _ = converted
    source = SourceState(load_state_dict(str(src)))
    result = centernet2mmplug.convert_centernet(source)
    assert source.unused == []
    assert sorted(source.taken) == sorted(source.keys())  # take() refuses a second read
    assert sorted(source.skipped) == sorted(
        [f'base.{tree}.project.{part}' for tree in ('level3', 'level4')
         for part in ('0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var',
                      '1.num_batches_tracked')] + ['base.fc.weight', 'base.fc.bias'])
    # 67 DCN biases folded into BN means: one source tensor fewer per deformable block.
    blocks = sum(k.endswith('conv_offset_mask.weight') for k in source.keys())
    assert len(result) == len(source.keys()) - len(source.skipped) - blocks


def test_converted_model_predicts_what_centernet_predicts(converted, capsys):
    reference, src, dst = converted
    run_converter(centernet2mmplug, src, dst)
    log = capsys.readouterr().out
    assert 'unmapped source keys: none' in log and 'missing keys: none' in log
    assert 'unexpected keys: none' in log and 'shape mismatches: none' in log
    ours, _ = build_model(load_config(str(CONFIG)))
    ours.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    ours.eval()

    batch = make_det_batch(1, (96, 128), num_classes=80, seed=4)
    head = ours.bbox_head
    with torch.no_grad(), record_outputs([head.heatmap_head, head.wh_head,
                                          head.offset_head]) as raw:
        data = ours.data_preprocessor(copy.deepcopy(batch), False)
        expected = reference(data['inputs'])
        ours.test_step(copy.deepcopy(batch))
    assert max_abs_diff(raw, [expected['hm'], expected['wh'], expected['reg']]) < 1e-4

    # Final detections: a random heatmap has many near-equal peaks, whose order float32
    # rounding may swap; in float64 the two models must give the same 100 detections.
    ours.double()
    reference.double()
    metas = [s.metainfo for s in data['data_samples']]
    with torch.no_grad():
        inputs = data['inputs'].double()
        got = ours.predict(inputs, copy.deepcopy(data['data_samples']), rescale=True)
        expected = reference(inputs)
        # CenterNet's outputs through the same decoding (sigmoid heatmap, 3x3 peaks, top 100).
        expected_dets = head.predict_by_feat([expected['hm'].sigmoid()], [expected['wh']],
                                             [expected['reg']], metas, rescale=True)
    ours.float()
    reference.float()
    pred = got[0].pred_instances
    assert len(pred) == len(expected_dets[0]) == 100
    assert torch.equal(pred.labels, expected_dets[0].labels)
    torch.testing.assert_close(pred.scores, expected_dets[0].scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(pred.bboxes, expected_dets[0].bboxes, rtol=0, atol=1e-6)


def test_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / 'ctdet_coco_resdcn18.pth'
    torch.save({'epoch': 1, 'state_dict': {'conv1.weight': torch.zeros(1),
                                           'deconv_layers.0.weight': torch.zeros(1)}}, src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(centernet2mmplug, src, tmp_path / 'out.pth')
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        "error: 'ctdet_coco_resdcn18.pth' is not a CenterNet DLA-34 ctdet (pose_dla_dcn 'dla' "
        'with hm/wh/reg heads) checkpoint: it has no base.base_layer.0.weight, '
        'dla_up.ida_0.proj_1.conv.conv_offset_mask.weight, ida_up.proj_1.conv.weight')
    assert not (tmp_path / 'out.pth').exists()
