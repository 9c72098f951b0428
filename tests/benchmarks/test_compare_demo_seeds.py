"""benchmarks/compare_demo_seeds.py: the runs it launches and the table it prints."""
import importlib.util
import json
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / 'benchmarks'


@pytest.fixture(scope='module')
def compare():
    spec = importlib.util.spec_from_file_location('compare_demo_seeds',
                                                  BENCH_DIR / 'compare_demo_seeds.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_trains_then_tests_each_seed(compare, capsys, tmp_path):
    compare.main(['configs/a_demo.py', '--seeds', '3', '7', '--work-root', str(tmp_path),
                  '--dry-run'])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    for line, tool, seed in zip(lines, ['train', 'test'] * 2, [3, 3, 7, 7]):
        assert f'tools/{tool}.py configs/a_demo.py' in line
        assert line.endswith(f'--cfg-options randomness.seed={seed}')
        assert str(tmp_path / 'a_demo' / f'seed{seed}') in line


def test_table_row_gives_mean_spread_and_every_seed(compare, tmp_path):
    per_seed = {}
    for seed, value in enumerate([0.10, 0.12, 0.14]):
        run = tmp_path / f'seed{seed}' / 'test' / '20261202_000000'
        run.mkdir(parents=True)
        (run / '20261202_000000.json').write_text(json.dumps({'coco/bbox_mAP': value,
                                                              'mIoU': 40.0 + seed}))
        per_seed[seed] = compare.read_test_metrics(str(tmp_path / f'seed{seed}'))
    row = compare.summarise('x_demo', per_seed, ['coco/bbox_mAP', 'mIoU'], 12.4)
    assert row == ('| `x_demo` | 12.0 +- 2.0 (10.0 / 12.0 / 14.0) | '
                   '41.0 +- 1.0 (40.0 / 41.0 / 42.0) | 3 | 12 |')


def test_missing_test_run_names_the_folder(compare, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        compare.read_test_metrics(str(tmp_path))


def test_reuse_reads_back_finished_seeds_and_runs_the_rest(compare, capsys, tmp_path):
    finished = tmp_path / 'a_demo' / 'seed0'
    (finished / 'test' / 'run').mkdir(parents=True)
    (finished / 'test' / 'run' / 'run.json').write_text(json.dumps({'mIoU': 40.0}))
    (finished / compare.MINUTES_FILE).write_text('7.5')
    compare.main(['configs/a_demo.py', '--seeds', '0', '1', '--work-root', str(tmp_path),
                  '--metrics', 'mIoU', '--reuse', '--dry-run'])
    lines = capsys.readouterr().out.splitlines()
    # seed 0 is read back, only seed 1 is run; a dry run tabulates the finished seed
    assert [line.split()[1].rsplit('/', 1)[-1] for line in lines[:2]] == ['train.py', 'test.py']
    assert all('randomness.seed=1' in line for line in lines[:2])
    assert lines[-1] == '| `a_demo` | 40.0 +- nan (40.0) | 1 | 8 |'
