"""tools/misc/gpu_check.sh rehearsed on the CPU (--device cpu --dry-run) at toy sizes.

Every step of the GPU run executes (set-up check, demo data, mmcv ops, mim train,
one AMP step, one benchmark) and its results land in one folder of at most 8 files,
what the device tool brings back.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmplug_agg.testing.cli import REPO_ROOT, TOOLS_DIR

pytestmark = pytest.mark.slow


def test_cpu_dry_run_writes_every_result(tmp_path):
    out = tmp_path / 'out'
    bin_dir = str(Path(sys.executable).parent)  # mim lives beside the interpreter
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable, TMPDIR=str(tmp_path),
               PATH=f"{bin_dir}:{os.environ['PATH']}", OMP_NUM_THREADS='1')
    # A wheel folder as --wheels gives it: mmcv wheels for another Python and for this one.
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    tag = 'cp%d%d' % sys.version_info[:2]
    for name in ('mmcv-2.1.0-cp39-cp39-linux_x86_64.whl',
                 f'mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl', 'mmcv-2.1.0.tar.gz'):
        (wheels / name).write_bytes(b'')
    result = subprocess.run(['bash', str(TOOLS_DIR / 'misc' / 'gpu_check.sh'), '--device', 'cpu',
                             '--dry-run', '--wheels', str(wheels)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8, files
    assert {'gpu_check.log', 'summary.json', 'ops.json', 'amp.json', 'bench.json',
            'train_scalars.json'} <= set(files)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['dry_run'] and summary['device'] == 'cpu'
    assert {k: v['status'] for k, v in summary['steps'].items()} == dict.fromkeys(
        ['setup', 'demo_data', 'ops', 'train', 'amp', 'bench'], 'ok')
    ops = json.loads((out / 'ops.json').read_text())
    assert set(ops) == {'RoIAlign', 'DeformConv2d', 'ModulatedDeformConv2d', 'nms'}
    amp = json.loads((out / 'amp.json').read_text())
    assert amp['fpn_faster_rcnn_r50_demo']['dtype'] == 'bfloat16'
    log = (out / 'gpu_check.log').read_text()
    assert 'mim train' in log or 'torch.distributed' in log
    # The set-up picks the wheel of this interpreter's tag from the first folder (--wheels),
    # and knows the sdist to build from if that wheel's ops do not run on the device.
    assert (f'mmcv plan: wheel for this Python: {wheels}/mmcv-2.1.0-{tag}-{tag}-linux_x86_64.whl;'
            f' sdist: {wheels}/mmcv-2.1.0.tar.gz') in log
    # the checkout is left as it was: run_all wrote into the output folder only
    assert not list(tmp_path.glob('gpu_check.*'))  # scratch folder removed


def test_amp_families_are_the_export_families():
    """The GPU run's AMP step covers every model family, through existing demo configs."""
    import importlib.util

    from mmplug_agg.testing.families import FAMILIES
    spec = importlib.util.spec_from_file_location('gpu_check', TOOLS_DIR / 'misc' / 'gpu_check.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths = module.select_configs(['families'])
    assert sorted(p.stem for p in paths) == sorted(demo for demo, _ in FAMILIES.values())
    assert all(p.is_file() for p in paths)
