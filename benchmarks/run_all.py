"""Run every side-by-side benchmark in one process; write a JSON, a plot and docs/benchmarks.md.

    python benchmarks/run_all.py [--device cuda] [--profile quick|full] [--only dla rfp ...]
    python benchmarks/run_all.py --from-json benchmarks/results/quick-cpu.json  # redraw only

Each entry of ``BENCHMARKS`` runs one ``benchmarks/bench_<method>.py`` through its
own ``main()`` with the arguments of the chosen profile: ``full`` is each
benchmark's defaults (the sizes of its docstring, for a GPU), ``quick`` shrinks
inputs and iterations so that the whole run fits a few minutes of a small CPU.
Every comparison the benchmarks time (:func:`timing.record`) is collected into

* ``benchmarks/results/<profile>-<device>.json``: machine, versions, and per
  comparison the median time and speed-up of each candidate against its
  reference (above 1.0: ours is faster);
* ``docs/diagrams/benchmarks_<profile>_<device>.png``: those speed-ups as bars;
* ``docs/benchmarks.md``: the table of the latest run and how to reproduce it.

A benchmark that fails is reported in the JSON and the page, and the others run.
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
import timing  # noqa: E402

# name -> (what it compares, quick-profile arguments). The full profile passes none.
BENCHMARKS: Dict[str, tuple] = {
    'dla': ('DLA-34/102 backbones vs timm', ['--batch', '1', '--size', '224']),
    'dlaup': ('DLA-Up head and neck vs mmseg FPNHead / mmdet FPN, CTResNetNeck',
              ['--scale', '0.25', '--no-dcn']),
    'hrnetv2': ('HRNetV2 head vs mmseg FCNHead, HRNetV2p neck vs mmdet HRFPN', []),
    'augfpn': ('AugFPN RoI extractors, RoI features + box head (vs PANet), Faster R-CNN vs FPN',
               ['--shape', '320', '512']),
    'rfp': ('RFP ResNet-50 vs mmdet DetectoRS RFP', ['--batch', '1', '--size', '160']),
    'bifpn': ('BiFPN D0/D3 vs effdet, and vs mmdet FPN', ['--batch', '1']),
    'dense_crf': ('DenseCRF vs pydensecrf (cold and warm), permutohedral vs exact',
                  ['--height', '256', '--width', '512']),
    'shape_adaptor': ('Shape Adaptor ResNet vs plain ResNet',
                      ['--depth', '18', '--size', '224', '--batch', '1']),
}
QUICK_TIMING = ['--iters', '3', '--warmup', '1', '--threads', '1']


def load_benchmark(name: str):
    path = BENCH_DIR / f'bench_{name}.py'
    spec = importlib.util.spec_from_file_location(f'bench_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_one(name: str, argv: List[str]) -> Dict:
    """Run bench_<name>.main() with ``argv`` and return what it recorded."""
    timing.RECORDS = []
    saved_argv, saved_threads = sys.argv, torch.get_num_threads()
    sys.argv = [f'bench_{name}.py', *argv]
    start = time.perf_counter()
    entry = dict(name=name, what=BENCHMARKS[name][0], argv=argv)
    try:
        load_benchmark(name).main()
        entry['status'] = 'ok'
    except Exception:  # noqa: BLE001  (one broken benchmark must not hide the others)
        entry['status'] = 'failed'
        entry['error'] = traceback.format_exc(limit=3)
        print(entry['error'], file=sys.stderr)
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(saved_threads)
    entry['seconds'] = round(time.perf_counter() - start, 1)
    entry['comparisons'] = timing.RECORDS
    timing.RECORDS = None
    return entry


def machine(device: str) -> Dict:
    info = dict(python=platform.python_version(), torch=torch.__version__,
                platform=platform.platform(), cpus=os.cpu_count(), device=device)
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
    return info


def plot(report: Dict, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels, ratios = [], []
    for entry in report['benchmarks']:
        for comparison in entry['comparisons']:
            setting = comparison['title'].split(' (median of')[0]
            setting = setting if len(setting) <= 80 else setting[:77] + '...'
            for candidate, result in comparison['results'].items():
                if candidate == comparison['reference']:
                    continue
                labels.append(f"{entry['name']}: {candidate} vs {comparison['reference']}\n"
                              f'{setting}')
                ratios.append(result['speedup_vs_reference'])
    height = max(3.0, 0.42 * len(labels) + 1.2)
    fig, ax = plt.subplots(figsize=(11, height))
    colours = ['#2ca02c' if r >= 1 else '#d62728' for r in ratios]
    # Ratios span from ~0.2x to ~50x: a log axis keeps both ends readable.
    ax.barh(range(len(ratios)), [r - 1 for r in ratios], left=1, color=colours)
    ax.set_xscale('log', base=2)
    ax.axvline(1.0, color='black', linewidth=1)
    for index, ratio in enumerate(ratios):
        ax.annotate(f'{ratio:.2f}x', (ratio, index), xytext=(3 if ratio >= 1 else -3, 0),
                    textcoords='offset points', va='center', fontsize=6,
                    ha='left' if ratio >= 1 else 'right')
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel('speed-up against the reference (reference time / candidate time, log scale)')
    ax.set_title(f"mmplug_agg benchmarks, {report['profile']} profile on "
                 f"{report['machine']['device']} ({report['date']})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def markdown(report: Dict, json_path: Path, plot_path: Path) -> str:
    """The benchmarks page; ``json_path`` is relative to the repository root."""
    m = report['machine']
    lines = [
        '# Benchmarks',
        '',
        'Every module has a side-by-side benchmark in `benchmarks/bench_<method>.py` that '
        'times it and its reference on the same input in one run. This page is written by',
        '',
        '```bash',
        'python benchmarks/run_all.py                      # quick profile on the CPU',
        'python benchmarks/run_all.py --device cuda --profile full',
        '```',
        '',
        'which runs them all in one process and writes the JSON and the plot below. '
        '**speed-up** is the reference\'s median time divided by the candidate\'s '
        '(above 1.0: the candidate is faster); one benchmark alone gives more rounds and '
        'options (see its docstring).',
        '',
        f"Latest run: {report['date']}, profile `{report['profile']}`, device "
        f"`{m['device']}`{' (' + m['gpu'] + ')' if 'gpu' in m else ''}, {m['cpus']} CPUs, "
        f"torch {m['torch']}, {report['seconds']:.0f} s. Data: "
        f'[`{json_path}`](../{json_path}).',
        '',
        f'![speed-ups](diagrams/{plot_path.name})',
        '',
        '| benchmark | comparison | candidate | reference | median ms | speed-up |',
        '| --- | --- | --- | --- | ---: | ---: |',
    ]
    for entry in report['benchmarks']:
        if entry['status'] != 'ok':
            lines.append(f"| {entry['name']} | failed: see the JSON | | | | |")
        for comparison in entry['comparisons']:
            for candidate, result in comparison['results'].items():
                if candidate == comparison['reference']:
                    continue
                lines.append(f"| {entry['name']} | {comparison['title']} | {candidate} | "
                             f"{comparison['reference']} | {result['median_ms']:.1f} | "
                             f"{result['speedup_vs_reference']:.2f}x |")
    lines += [
        '',
        'CPU numbers on a shared machine drift with other processes\' load; the quick '
        'profile takes one round of 3 timed iterations per comparison. GPU numbers need '
        'a CUDA machine (`--device cuda --profile full`).',
        '',
    ]
    return '\n'.join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--profile', choices=('quick', 'full'), default=None,
                        help='quick: small inputs (default on CPU); full: the benchmarks\' '
                        'own defaults (default on CUDA)')
    parser.add_argument('--only', nargs='+', choices=sorted(BENCHMARKS), default=None)
    parser.add_argument('--no-docs', action='store_true',
                        help='write the JSON and the plot but not docs/benchmarks.md')
    parser.add_argument('--from-json', type=Path, default=None,
                        help='run nothing: redraw the plot and the page from a saved run')
    args = parser.parse_args()
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        return write_outputs(report, args.no_docs)
    profile = args.profile or ('full' if args.device.startswith('cuda') else 'quick')
    start = time.perf_counter()
    report = dict(date=datetime.date.today().isoformat(), profile=profile,
                  machine=machine(args.device), benchmarks=[])
    for name in args.only or BENCHMARKS:
        argv = ['--device', args.device]
        if profile == 'quick':
            argv += [*BENCHMARKS[name][1], *QUICK_TIMING]
        print(f'\n===== {name}: {" ".join(argv)}', flush=True)
        report['benchmarks'].append(run_one(name, argv))
    report['seconds'] = round(time.perf_counter() - start, 1)
    return write_outputs(report, args.no_docs)


def write_outputs(report: Dict, no_docs: bool, root: Path = REPO) -> int:
    """The JSON, the plot and (unless ``no_docs``) docs/benchmarks.md under ``root``.

    Returns 1 if a benchmark failed, else 0.
    """
    tag = f"{report['profile']}-{report['machine']['device'].split(':')[0]}"
    json_path = root / 'benchmarks' / 'results' / f'{tag}.json'
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + '\n')
    plot_path = root / 'docs' / 'diagrams' / f"benchmarks_{tag.replace('-', '_')}.png"
    plot(report, plot_path)
    print(f'\nwrote {json_path.relative_to(root)} and {plot_path.relative_to(root)}')
    if not no_docs:
        (root / 'docs' / 'benchmarks.md').write_text(
            markdown(report, json_path.relative_to(root), plot_path))
        print('wrote docs/benchmarks.md')
    failed = [e['name'] for e in report['benchmarks'] if e['status'] != 'ok']
    if failed:
        print(f'failed: {", ".join(failed)}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
