"""benchmarks/run_all.py: comparisons are recorded, and the JSON, plot and page are written."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / 'benchmarks'


@pytest.fixture(scope='module')
def run_all():
    spec = importlib.util.spec_from_file_location('run_all', BENCH_DIR / 'run_all.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on sys.path, as the script does
    return module


def test_every_benchmark_file_has_an_entry(run_all):
    files = {p.stem[len('bench_'):] for p in BENCH_DIR.glob('bench_*.py')}
    assert files == set(run_all.BENCHMARKS)


def test_compare_records_only_while_collecting(run_all):
    timing = sys.modules['timing']
    steps = {'reference': lambda: None, 'ours': lambda: None}
    timing.RECORDS = None
    timing.compare('alone', steps, 'reference', 'cpu', iters=1, warmup=0)
    timing.RECORDS = []
    try:
        timing.compare('collected', steps, 'reference', 'cpu', iters=1, warmup=0)
        records = timing.RECORDS
    finally:
        timing.RECORDS = None
    assert [r['title'] for r in records] == ['collected']
    assert records[0]['reference'] == 'reference'
    assert set(records[0]['results']['ours']) >= {'median_ms', 'speedup_vs_reference'}


def test_outputs_of_a_run_with_a_failed_benchmark(run_all, tmp_path):
    result = dict(median_ms=2.0, speedup_vs_reference=1.5)
    report = dict(
        date='2026-12-01', profile='quick', seconds=3.0,
        machine=dict(device='cpu', cpus=2, torch='2.x', python='3.11', platform='linux'),
        benchmarks=[
            dict(name='dla', status='ok', comparisons=[
                dict(title='dla34 (median of 3 rounds)', reference='timm',
                     results=dict(timm=dict(median_ms=3.0, speedup_vs_reference=1.0),
                                  ours=result))]),
            dict(name='rfp', status='failed', error='Traceback ...', comparisons=[]),
        ])
    assert run_all.write_outputs(report, no_docs=False, root=tmp_path) == 1
    saved = json.loads((tmp_path / 'benchmarks' / 'results' / 'quick-cpu.json').read_text())
    assert saved['benchmarks'][1]['status'] == 'failed'
    assert (tmp_path / 'docs' / 'diagrams' / 'benchmarks_quick_cpu.png').stat().st_size > 0
    page = (tmp_path / 'docs' / 'benchmarks.md').read_text()
    assert '| dla | dla34 (median of 3 rounds) | ours | timm | 2.0 | 1.50x |' in page
    assert '| rfp | failed' in page
    assert 'benchmarks/results/quick-cpu.json' in page
