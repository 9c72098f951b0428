"""tools/model_converters/dlaup2mmplug.py: ucbdrive/dla DLA-Up segmentation, end to end.

ucbdrive/dla cannot be installed (its segmentation code needs the repository's own
compiled modules). The reference is ``mmplug_agg.testing.official_dla.UcbdriveDLAUp``:
``dla_up.py``'s ``DLASeg`` written with its module names, so its state dict has the
official key layout (plus the trunk tensors the official DLA stores and timm does not).
"""
import copy

import pytest
import torch

from mmplug_agg.testing import make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR, last_line
from mmplug_agg.testing.official_dla import UcbdriveDLAUp, official_state_dict
from mmplug_agg.testing.parity import (load_converter, max_abs_diff, randomize_, record_outputs,
                                       run_converter, unit_gain_, calibrate_bn_)
from mmplug_agg.utils.conversion import SourceState, load_state_dict
from mmplug_agg.utils.launch import build_model, load_config

dlaup2mmplug = load_converter('dlaup2mmplug')
CONFIGS = {'dla34': 'dla34up_cityscapes_512x1024_80k.py',
           'dla102': 'dla102up_cityscapes_832_poly.py'}


def official_checkpoint(arch, path):
    torch.manual_seed(0)
    reference = UcbdriveDLAUp(arch, num_classes=19).eval()
    randomize_(reference, seed=5)
    unit_gain_(reference.fc[0], seed=2)
    calibrate_bn_(reference, lambda model: model(torch.randn(2, 3, 64, 96)))
    # segment.py saves the DataParallel model's state dict: every key starts 'module.'.
    state = {f'module.{k}': v for k, v in official_state_dict(reference).items()}
    torch.save({'epoch': 500, 'arch': f'{arch}up', 'best_prec1': 0.0, 'state_dict': state}, path)
    return reference


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Random ucbdrive models and their checkpoints, built once per architecture."""
    cache = {}

    def get(arch):
        if arch not in cache:
            src = tmp_path_factory.mktemp(arch) / f'{arch}up.pth'
            cache[arch] = official_checkpoint(arch, src), src
        return cache[arch]

    return get


@pytest.mark.parametrize('arch', ['dla34', 'dla102'])
def test_converted_model_segments_as_ucbdrive_does(arch, checkpoints, tmp_path, capsys):
    reference, src = checkpoints(arch)
    dst = tmp_path / f'{arch}up_mmplug.pth'
    run_converter(dlaup2mmplug, src, dst)
    log = capsys.readouterr().out
    assert f'target config: {CONFIG_DIR / CONFIGS[arch]}' in log
    assert 'unmapped source keys: none' in log and 'missing keys: none' in log
    assert 'unexpected keys: none' in log and 'shape mismatches: none' in log
    cfg = load_config(str(CONFIG_DIR / CONFIGS[arch]))
    ours, _ = build_model(cfg)
    ours.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    ours.eval()

    batch = make_seg_batch(1, (64, 96), num_classes=19, seed=3)
    with torch.no_grad(), record_outputs([ours.decode_head.conv_seg]) as raw:
        data = ours.data_preprocessor(copy.deepcopy(batch), False)
        log_probs, logits = reference(data['inputs'])
        got = ours.test_step(copy.deepcopy(batch))[0]
        upsampled = reference.up(logits)
    assert max_abs_diff(raw, logits) < 1e-4
    # mmseg's bilinear resize is ucbdrive's fixed deconv inside the image; on the outer
    # pixel ring the deconv scales every class alike (zero padding), so the argmax is
    # the same everywhere.
    assert max_abs_diff(got.seg_logits.data[:, 1:-1, 1:-1], upsampled[0, :, 1:-1, 1:-1]) < 1e-4
    assert torch.equal(got.pred_sem_seg.data[0], log_probs[0].argmax(0))
    assert got.pred_sem_seg.data.unique().numel() > 2


def test_every_original_key_is_used_exactly_once(checkpoints):
    _, src = checkpoints('dla102')
    source = SourceState(load_state_dict(str(src)))
    converted = dlaup2mmplug.convert_dlaup(source)
    assert source.unused == [] and sorted(source.taken) == sorted(source.keys())
    # DLA-102's trees of 3 and 4 levels build projections at every inner level whose
    # widths change; only the innermost one is used.
    dead = ['level3', 'level3.tree1', 'level4', 'level4.tree1', 'level4.tree1.tree1']
    parts = ('0.weight', '1.weight', '1.bias', '1.running_mean', '1.running_var',
             '1.num_batches_tracked')
    assert sorted(source.skipped) == sorted(
        [f'base.{tree}.project.{part}' for tree in dead for part in parts]
        + ['base.fc.weight', 'base.fc.bias', 'up.weight'])
    assert len(converted) == len(source.keys()) - len(source.skipped)
    # ucbdrive projects only where widths differ: stage i has no proj_0.
    assert 'dla_up.ida_0.proj_0.0.weight' not in source
    assert tuple(source.shape('dla_up.ida_3.node_4.0.weight')) == (32, 64, 3, 3)


def test_a_learnt_final_upsampling_is_refused(tmp_path, capsys):
    src = tmp_path / 'odd.pth'
    state = {k: torch.zeros(1) for k in ('base.base_layer.0.weight',
                                         'dla_up.ida_0.node_1.0.weight', 'fc.0.weight')}
    state['up.weight'] = torch.rand(19, 1, 4, 4)
    torch.save({'state_dict': state}, src)
    with pytest.raises(SystemExit):
        run_converter(dlaup2mmplug, src, tmp_path / 'out.pth')
    assert last_line(capsys.readouterr().err) == (
        "error: 'odd.pth''s final 'up' deconv is not the fixed bilinear kernel; mmseg cannot "
        'express a learnt one')


def test_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    src = tmp_path / 'dla34-ba72cf86.pth'  # an ImageNet classifier: dla2mmplug.py's job
    torch.save({'base_layer.0.weight': torch.zeros(1), 'fc.weight': torch.zeros(1)}, src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(dlaup2mmplug, src, tmp_path / 'out.pth')
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        "error: 'dla34-ba72cf86.pth' is not a ucbdrive/dla DLA-Up segmentation (dla_up.py "
        'DLASeg) checkpoint: it has no base.base_layer.0.weight, '
        'dla_up.ida_0.node_1.0.weight, fc.0.weight')
    assert not (tmp_path / 'out.pth').exists()
