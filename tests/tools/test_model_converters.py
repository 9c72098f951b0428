"""tools/model_converters/dla2mmplug.py, run as a user would."""
import hashlib

import pytest
import timm
import torch

from mmplug_agg.models.backbones import DLA
from mmplug_agg.testing.cli import TOOLS_DIR, last_line, run_tool
from mmplug_agg.testing.parity import load_converter, run_converter

CONVERTER = TOOLS_DIR / 'model_converters' / 'dla2mmplug.py'
dla2mmplug = load_converter('dla2mmplug')


def test_timm_checkpoint_converts_and_loads_as_pretrained(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model('dla34', pretrained=False).eval()
    src, dst = tmp_path / 'dla34_timm.pth', tmp_path / 'dla34_mmplug.pth'
    torch.save(reference.state_dict(), src)

    result = run_tool([CONVERTER, src, dst, '--arch', 'dla34'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f'sha256: {hashlib.sha256(src.read_bytes()).hexdigest()}' in lines
    assert 'dropped on purpose: fc.weight, fc.bias' in lines
    assert 'unmapped source keys: none' in lines
    assert 'missing keys: none' in lines and 'unexpected keys: none' in lines
    assert 'shape mismatches: none' in lines

    # An mmengine checkpoint that keeps where it came from.
    written = torch.load(dst, weights_only=True)
    assert set(written) == {'meta', 'state_dict'}
    assert written['meta']['source_sha256'] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert written['meta']['converted_from'] == 'dla34_timm.pth'
    assert written['meta']['arch'] == 'dla34'

    model = DLA('dla34', out_indices=(5, ),
                init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image)[0], reference.forward_features(image))


def test_without_arch_the_only_fitting_architecture_is_used(tmp_path, capsys):
    src, dst = tmp_path / 'dla46x_c.pth', tmp_path / 'out.pth'
    torch.save({'state_dict': timm.create_model('dla46x_c', pretrained=False).state_dict()}, src)
    run_converter(dla2mmplug, src, dst)
    assert 'arch: dla46x_c (the only DLA these tensors fit)' in capsys.readouterr().out
    assert torch.load(dst, weights_only=True)['meta']['arch'] == 'dla46x_c'
    DLA('dla46x_c').load_state_dict(torch.load(dst, weights_only=True)['state_dict'])


def test_wrong_arch_is_reported_and_nothing_is_written(tmp_path, capsys):
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pth'
    torch.save(timm.create_model('dla34', pretrained=False).state_dict(), src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(dla2mmplug, src, dst, '--arch', 'dla46_c')
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert 'shape mismatches: none' not in captured.out.splitlines()
    assert last_line(captured.err) == (
        'error: the checkpoint does not match dla46_c; nothing written')
    assert not dst.exists()


def test_another_architecture_is_refused_in_one_line(tmp_path, capsys):
    src, dst = tmp_path / 'resnet50.pth', tmp_path / 'out.pth'
    torch.save({'conv1.weight': torch.zeros(64, 3, 7, 7), 'fc.weight': torch.zeros(10, 2048)},
               src)
    with pytest.raises(SystemExit) as exit_info:
        run_converter(dla2mmplug, src, dst)
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        "error: 'resnet50.pth' is not a DLA ImageNet classifier (ucbdrive/dla or timm dla.py) "
        'checkpoint: it has no base_layer.0.weight, level0.0.weight, level1.0.weight')
    assert not dst.exists()


def test_a_detector_or_segmentor_is_sent_to_its_converter(tmp_path, capsys):
    src = tmp_path / 'ctdet_coco_dla_2x.pth'
    torch.save({'model': {'base.base_layer.0.weight': torch.zeros(16, 3, 7, 7)}}, src)
    with pytest.raises(SystemExit):
        run_converter(dla2mmplug, src, tmp_path / 'out.pth')
    assert 'use centernet2mmplug.py' in last_line(capsys.readouterr().err)


def test_unplaceable_tensors_are_reported_and_nothing_is_written(tmp_path, capsys):
    state = timm.create_model('dla34', pretrained=False).state_dict()
    state['level3.extra.weight'] = torch.zeros(3)
    src, dst = tmp_path / 'dla34_extra.pth', tmp_path / 'out.pth'
    torch.save(state, src)
    with pytest.raises(SystemExit):
        run_converter(dla2mmplug, src, dst, '--arch', 'dla34')
    captured = capsys.readouterr()
    assert 'unexpected keys: level3.extra.weight' in captured.out.splitlines()
    assert last_line(captured.err) == 'error: the checkpoint does not match dla34; nothing written'
    assert not dst.exists()


def test_missing_source_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_converter(dla2mmplug, tmp_path / 'nope.pth', tmp_path / 'out.pth')
    assert exit_info.value.code == 1
    assert last_line(capsys.readouterr().err) == (
        f"error: checkpoint '{tmp_path / 'nope.pth'}' does not exist")
