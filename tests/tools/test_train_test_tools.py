"""tools/train.py and tools/test.py end to end on demo data, as a user runs them.

Covers: train + evaluate + draw predictions, resume under torch >= 2.6, two-process
CPU distributed training, mim resolving our tools and configs, and the one-line
errors of bad input.
"""
import json
import sys
from pathlib import Path

import pytest

from mmplug_agg.testing.cli import (CONFIG_DIR, TOOLS_DIR, last_line, quick_options,
                                    run_tool, run_tool_in_process)

DEMO_CONFIG = CONFIG_DIR / 'fpn_faster_rcnn_r50_demo.py'
TRAIN = TOOLS_DIR / 'train.py'
TEST = TOOLS_DIR / 'test.py'
MIM = Path(sys.executable).with_name('mim')

pytestmark = pytest.mark.slow


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def scalars(work_dir: Path) -> list:
    """Records of the newest run's ``vis_data/scalars.json`` (one JSON per line)."""
    runs = sorted(p for p in work_dir.iterdir() if (p / 'vis_data' / 'scalars.json').is_file())
    lines = (runs[-1] / 'vis_data' / 'scalars.json').read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope='module')
def trained(tmp_path_factory, small_demo_data):
    """One quick training run shared by the tests that need a checkpoint."""
    cwd = tmp_path_factory.mktemp('trained')
    (cwd / 'data').mkdir()
    (cwd / 'data' / 'demo').symlink_to(small_demo_data)
    work_dir = cwd / 'work'
    result = run_tool([TRAIN, DEMO_CONFIG, '--work-dir', work_dir, *quick_options()], cwd)
    return cwd, work_dir, result


def test_train_writes_checkpoint_and_evaluates(trained):
    cwd, work_dir, result = trained
    assert_ok(result)
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    records = scalars(work_dir)
    assert any('loss' in r for r in records)
    assert any('coco/bbox_mAP' in r for r in records), records[-1]


def test_test_tool_evaluates_and_draws_predictions(trained):
    cwd, work_dir, _ = trained
    result = run_tool([TEST, DEMO_CONFIG, work_dir / 'epoch_1.pth', '--work-dir',
                       cwd / 'test_out', '--show-dir', 'predictions',
                       '--out', cwd / 'preds.pkl'], cwd)
    assert_ok(result)
    drawn = list((cwd / 'test_out').glob('*/predictions/*.png'))
    assert len(drawn) == 3  # one per validation image
    assert (cwd / 'preds.pkl').is_file()
    assert 'coco/bbox_mAP' in result.stdout + result.stderr


def test_resume_continues_from_mmengine_checkpoint(trained, tmp_path):
    """torch >= 2.6 loads with weights_only=True; mmengine 0.10.7's run state needs more."""
    cwd, work_dir, _ = trained
    resumed_dir = tmp_path / 'resumed'
    resumed_dir.mkdir()
    (resumed_dir / 'epoch_1.pth').symlink_to(work_dir / 'epoch_1.pth')
    result = run_tool([TRAIN, DEMO_CONFIG, '--work-dir', resumed_dir, '--resume',
                       resumed_dir / 'epoch_1.pth',
                       *quick_options('train_cfg.max_epochs=2')], cwd)
    assert_ok(result)
    log = result.stdout + result.stderr
    assert 'resumed epoch: 1' in log
    assert (resumed_dir / 'epoch_2.pth').is_file()
    assert [r['epoch'] for r in scalars(resumed_dir) if 'loss' in r][0] == 2


def test_distributed_training_on_two_cpu_processes(run_dir):
    work_dir = run_dir / 'dist'
    result = run_tool(
        ['--nproc_per_node=2', '--master_port=29531', TRAIN, DEMO_CONFIG, '--work-dir', work_dir,
         '--launcher', 'pytorch', *quick_options('train_dataloader.batch_size=1')],
        run_dir, launcher=(sys.executable, '-m', 'torch.distributed.run'),
        env={'OMP_NUM_THREADS': '1'})
    assert_ok(result)
    log = result.stdout + result.stderr
    assert 'Distributed training: True' in log
    # 6 images, 1 per process per step: each of the 2 ranks takes 3 steps an epoch
    assert 'Epoch(train) [1][3/3]' in log
    # torchrun exits 0 only when every rank did; rank 0 alone writes the checkpoint
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['epoch_1.pth']


def test_mim_finds_our_tools_and_configs(trained):
    cwd, work_dir, _ = trained
    result = run_tool(['test', 'mmplug_agg', DEMO_CONFIG.name, '--checkpoint',
                       work_dir / 'epoch_1.pth', '--work-dir', cwd / 'mim_test', '--cfg-options',
                       'test_dataloader.num_workers=0',
                       'test_dataloader.persistent_workers=False'], cwd, launcher=(str(MIM), ))
    assert_ok(result)
    out = result.stdout + result.stderr
    assert str(CONFIG_DIR / DEMO_CONFIG.name) in out  # resolved by basename
    assert 'coco/bbox_mAP' in out


@pytest.mark.parametrize('case', ['unknown_type', 'missing_data_root', 'half_written_demo',
                                  'missing_config', 'bad_launcher', 'missing_resume'])
def test_bad_input_ends_with_one_clear_line(case, run_dir, monkeypatch, capsys):
    work_dir = run_dir / 'work'
    work_dir.mkdir()
    (work_dir / 'keep.txt').write_text('earlier results')
    args = [TRAIN, DEMO_CONFIG, '--work-dir', work_dir]
    expected_code, expected = 1, ''
    if case == 'unknown_type':
        args += ['--cfg-options', 'model.neck.type=NoSuchNeck']
        expected = 'NoSuchNeck is not in the mmdet::model registry'
    elif case == 'missing_data_root':
        args += ['--cfg-options', 'train_dataloader.dataset.data_root=nowhere/']
        expected = "data_root 'nowhere/' does not exist"
    elif case == 'half_written_demo':
        (run_dir / 'data' / 'demo').unlink()
        (run_dir / 'data' / 'demo').mkdir()
        (run_dir / 'data' / 'demo' / 'images').mkdir()
        expected = '--force'
    elif case == 'missing_config':
        args[1] = 'configs/no_such_config.py'
        expected = "config file 'configs/no_such_config.py' does not exist"
    elif case == 'bad_launcher':
        args += ['--launcher', 'kubernetes']
        expected_code, expected = 2, "invalid choice: 'kubernetes'"
    elif case == 'missing_resume':
        args += ['--resume', 'nowhere.pth']
        expected = "checkpoint 'nowhere.pth' does not exist"
    if case == 'unknown_type':  # gets as far as the runner: a real process
        result = run_tool(args, run_dir)
        code, stderr = result.returncode, result.stderr
    else:  # refused before anything is built
        code, stderr = run_tool_in_process(args[0], args[1:], run_dir, monkeypatch, capsys)
    assert code == expected_code, stderr[-3000:]
    assert expected in last_line(stderr)
    if expected_code == 1:
        assert last_line(stderr).startswith('error: ')
        assert 'Traceback' not in stderr
    # what was there stays; at most the runner's timestamped log folder is added
    assert (work_dir / 'keep.txt').read_text() == 'earlier results'
    assert not list(work_dir.glob('*.pth'))
