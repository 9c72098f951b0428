"""tools/deployment/pytorch2onnx.py as a user runs it: export + --verify, and one-line errors."""
import pytest

from mmplug_agg.testing.cli import (CONFIG_DIR, REPO_ROOT, TOOLS_DIR, last_line, run_tool,
                                    run_tool_in_process)

pytest.importorskip('onnxruntime')
TOOL = TOOLS_DIR / 'deployment' / 'pytorch2onnx.py'


def test_export_and_verify_two_stage_detector(tmp_path):
    out = tmp_path / 'augfpn.onnx'
    result = run_tool([TOOL, CONFIG_DIR / 'augfpn_faster_rcnn_r50_demo.py', '--shape', '96',
                       '128', '--dynamic-shape', '--out', out, '--verify'], cwd=REPO_ROOT,
                      env={'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and (tmp_path / 'augfpn_roi.onnx').is_file()
    verify_lines = [line for line in result.stdout.splitlines() if line.startswith('verify:')]
    assert len(verify_lines) == 4, result.stdout  # two graphs at two sizes
    assert all(line.endswith('(tolerance 0.0001)') and '-> ok' in line for line in verify_lines)


@pytest.mark.parametrize('args, message', [
    (['--out', 'x.txt'], '--out must name an .onnx file'),
    (['--out', 'x.onnx', '--opset', '11'], 'opset must be at least 16'),
    (['--out', 'no/such/dir/x.onnx'], 'does not exist'),
])
def test_user_mistakes_end_with_one_error_line(tmp_path, args, message, monkeypatch, capsys):
    code, stderr = run_tool_in_process(
        TOOL, [CONFIG_DIR / 'fpn_faster_rcnn_r50_demo.py', '--shape', '64', '64', *args],
        tmp_path, monkeypatch, capsys)
    assert code == 1
    assert last_line(stderr).startswith('error: ') and message in stderr
    assert 'Traceback' not in stderr


def test_deformable_sac_is_refused_with_the_fix(tmp_path):
    result = run_tool([TOOL, CONFIG_DIR / 'detectors_cascade_rcnn_r50_demo.py', '--shape', '64',
                       '64', '--out', tmp_path / 'x.onnx'], cwd=tmp_path)
    assert result.returncode == 1
    assert 'use_deform=False' in last_line(result.stderr) and 'Traceback' not in result.stderr


def test_a_shape_the_model_cannot_run_at_is_one_error_line(tmp_path):
    # SAC's reflect padding needs 3 pixels at stride 32; 64 x 64 gives 2.
    result = run_tool([TOOL, CONFIG_DIR / 'detectors_cascade_rcnn_r50_demo.py', '--shape', '64',
                       '64', '--out', tmp_path / 'x.onnx', '--cfg-options',
                       'model.backbone.backbone.sac.use_deform=False'], cwd=tmp_path)
    assert result.returncode == 1
    line = last_line(result.stderr)
    assert line.startswith('error: the model does not run at --shape 64 64 (') and \
        'try a larger --shape' in line, line
    assert 'Traceback' not in result.stderr
