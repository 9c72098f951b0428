"""tools/slurm_train.sh and slurm_test.sh launch what mmdet's scripts launch.

A stand-in ``srun`` first on ``PATH`` records its arguments and environment as
JSON instead of submitting a job (and, when asked, runs the command it was given,
as srun would on each task), so the test checks the exact command line: the srun
options built from PARTITION, JOB_NAME, GPUS, GPUS_PER_NODE, CPUS_PER_TASK and
SRUN_ARGS, then ``python -u tools/train.py CONFIG --work-dir=... --launcher=slurm``
and the extra arguments.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmplug_agg.testing.cli import CONFIG_DIR, TOOLS_DIR, last_line

STAND_IN_SRUN = '''#!/usr/bin/env bash
"$STAND_IN_PYTHON" - "$@" <<'PY'
import json, os, sys
with open(os.environ['SRUN_RECORD'], 'w') as f:
    json.dump(dict(argv=sys.argv[1:], env=dict(os.environ)), f)
PY
if [ -n "$SRUN_EXEC" ]; then  # drop srun's own options (-p takes a value), run the rest
    args=("$@"); i=0
    while [[ "${args[i]}" == -* ]]; do
        if [[ "${args[i]}" == -p ]]; then i=$((i + 2)); else i=$((i + 1)); fi
    done
    exec "${args[@]:i}"
fi
'''
CONFIG = str(CONFIG_DIR / 'fpn_faster_rcnn_r50_demo.py')


@pytest.fixture
def srun_dir(tmp_path) -> Path:
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(STAND_IN_SRUN)
    srun.chmod(0o755)
    return tmp_path


def launch(script, args, srun_dir, **env):
    record = srun_dir / 'srun.json'
    full_env = dict(os.environ, PATH=f"{srun_dir / 'bin'}:{os.environ['PATH']}",
                    STAND_IN_PYTHON=sys.executable, SRUN_RECORD=str(record), **env)
    for name in ('GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'PY_ARGS',
                 'SRUN_EXEC'):
        if name not in env:
            full_env.pop(name, None)
    result = subprocess.run(['bash', str(TOOLS_DIR / script), *args], env=full_env,
                            capture_output=True, text=True, timeout=120)
    assert record.is_file(), result.stderr
    return result, json.loads(record.read_text())


def srun_options(partition='dev', job='job', gpus=8, per_node=8, cpus=5):
    return ['-p', partition, f'--job-name={job}', f'--gres=gpu:{per_node}', f'--ntasks={gpus}',
            f'--ntasks-per-node={per_node}', f'--cpus-per-task={cpus}', '--kill-on-bad-exit=1']


def test_slurm_train_defaults_match_mmdet(srun_dir):
    result, record = launch('slurm_train.sh', ['dev', 'job', CONFIG, 'work_dirs/x'], srun_dir)
    assert result.returncode == 0, result.stderr
    assert record['argv'] == [
        *srun_options(), 'python', '-u', f'{TOOLS_DIR}/train.py', CONFIG,
        '--work-dir=work_dirs/x', '--launcher=slurm']
    assert record['env']['PYTHONPATH'].split(':')[0] == f'{TOOLS_DIR}/..'


def test_slurm_train_takes_the_environment_and_extra_arguments(srun_dir):
    _, record = launch('slurm_train.sh', ['gpu', 'rfp', CONFIG, 'work', '--amp', '--cfg-options',
                                          'train_cfg.max_epochs=1'], srun_dir,
                       GPUS='16', GPUS_PER_NODE='4', CPUS_PER_TASK='2',
                       SRUN_ARGS='--quotatype=auto --mem=0', PYTHON=sys.executable)
    assert record['argv'] == [
        *srun_options('gpu', 'rfp', 16, 4, 2), '--quotatype=auto', '--mem=0', sys.executable,
        '-u', f'{TOOLS_DIR}/train.py', CONFIG, '--work-dir=work', '--launcher=slurm', '--amp',
        '--cfg-options', 'train_cfg.max_epochs=1']


def test_slurm_test_passes_the_checkpoint_and_py_args(srun_dir):
    _, record = launch('slurm_test.sh', ['dev', 'eval', CONFIG, 'epoch_12.pth'], srun_dir,
                       GPUS='2', GPUS_PER_NODE='2', PY_ARGS='--out preds.pkl --tta')
    assert record['argv'] == [
        *srun_options('dev', 'eval', 2, 2), 'python', '-u', f'{TOOLS_DIR}/test.py', CONFIG,
        'epoch_12.pth', '--launcher=slurm', '--out', 'preds.pkl', '--tta']


@pytest.mark.slow
def test_launched_train_command_runs_and_reports_the_cpu_host(srun_dir):
    """The launched command is a working train.py call; without GPUs it says so in one line."""
    result, _ = launch('slurm_train.sh', ['dev', 'job', CONFIG, str(srun_dir / 'work')],
                       srun_dir, PYTHON=sys.executable, SRUN_EXEC='1', GPUS='1',
                       GPUS_PER_NODE='1')
    if torch.cuda.is_available():
        pytest.skip('a GPU host would start training')
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        'error: --launcher slurm needs GPUs; on a CPU-only host use --launcher pytorch '
        '(torchrun) or --launcher none')
