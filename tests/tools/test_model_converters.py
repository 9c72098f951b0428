"""tools/model_converters/dla2mmplug.py, run as a user would."""
import timm
import torch

from mmplug_agg.models.backbones import DLA
from mmplug_agg.testing.cli import TOOLS_DIR, last_line, run_tool

CONVERTER = TOOLS_DIR / 'model_converters' / 'dla2mmplug.py'


def test_timm_checkpoint_converts_and_loads_as_pretrained(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model('dla34', pretrained=False).eval()
    src, dst = tmp_path / 'dla34_timm.pth', tmp_path / 'dla34_mmplug.pth'
    torch.save(reference.state_dict(), src)

    result = run_tool([CONVERTER, src, dst, '--arch', 'dla34'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'dropped 2: fc.weight, fc.bias' in result.stdout
    assert 'missing keys: none' in result.stdout and 'unexpected keys: none' in result.stdout

    model = DLA('dla34', out_indices=(5, ),
                init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    model.init_weights()
    model.eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image)[0], reference.forward_features(image))


def test_wrong_arch_is_reported_and_nothing_is_written(tmp_path):
    src, dst = tmp_path / 'dla34.pth', tmp_path / 'out.pth'
    torch.save(timm.create_model('dla34', pretrained=False).state_dict(), src)
    result = run_tool([CONVERTER, src, dst, '--arch', 'dla46_c'], cwd=tmp_path)
    assert result.returncode == 1
    assert last_line(result.stderr) == 'error: the checkpoint does not match dla46_c; nothing written'
    assert not dst.exists()


def test_missing_source_is_one_line(tmp_path):
    result = run_tool([CONVERTER, tmp_path / 'nope.pth', tmp_path / 'out.pth'], cwd=tmp_path)
    assert result.returncode == 1
    assert last_line(result.stderr) == f"error: checkpoint '{tmp_path / 'nope.pth'}' does not exist"
