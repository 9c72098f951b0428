"""Demo configs side by side over several seeds: is a gap larger than the seed noise?

Trains and tests each demo config once per seed (``tools/train.py`` with
``randomness.seed``, then ``tools/test.py`` on the last checkpoint) and prints one
markdown row per config: mean and sample standard deviation of each metric, the
per-seed values and the minutes taken. One run of the AugFPN demo takes about 8
minutes on 2 idle cores, so the AugFPN table of docs/augfpn.md (baseline, AugFPN,
three ablations, PANet, three seeds) is a two-hour job: run it on a quiet machine.

    python benchmarks/compare_demo_seeds.py \\
        configs/augfpn_baseline_faster_rcnn_r50_demo.py configs/augfpn_faster_rcnn_r50_demo.py \\
        --seeds 0 1 2 [--metrics coco/bbox_mAP coco/bbox_mAP_50] [--work-root work_dirs/seeds]
        [--dry-run] [--reuse]

With ``--reuse`` a (config, seed) whose test metrics already exist under the work
root is read back instead of run again (its minutes too), so the runs can be spread
over several processes (one thread each: ``OMP_NUM_THREADS=1``) and tabulated at
the end by one call with every config.
"""
import argparse
import glob
import json
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MINUTES_FILE = 'minutes.txt'  # written once a seed is trained and tested


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='+', help='demo configs to compare')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--metrics', nargs='+', default=['coco/bbox_mAP', 'coco/bbox_mAP_50'])
    parser.add_argument('--work-root', default=osp.join(REPO, 'work_dirs', 'seeds'))
    parser.add_argument('--dry-run', action='store_true', help='print the commands only')
    parser.add_argument('--reuse', action='store_true',
                        help='read back the seeds already tested under --work-root')
    return parser.parse_args(argv)


def run_commands(config: str, seed: int, work_dir: str) -> List[List[str]]:
    python = sys.executable
    seed_option = ['--cfg-options', f'randomness.seed={seed}']
    return [
        [python, osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir,
         *seed_option],
        [python, osp.join(REPO, 'tools', 'test.py'), config, '{last_checkpoint}',
         '--work-dir', osp.join(work_dir, 'test'), *seed_option],
    ]


def read_test_metrics(work_dir: str) -> Dict[str, float]:
    """The metrics of the newest ``tools/test.py`` run under ``work_dir/test``."""
    runs = sorted(glob.glob(osp.join(work_dir, 'test', '*', '*.json')), key=osp.getmtime)
    if not runs:
        raise FileNotFoundError(f'no test metrics under {work_dir}/test')
    with open(runs[-1]) as f:
        return json.load(f)


def finished_minutes(work_dir: str) -> Optional[float]:
    """Minutes a finished (trained and tested) seed took, or None if it did not finish."""
    path = osp.join(work_dir, MINUTES_FILE)
    if not osp.exists(path):
        return None
    with open(path) as f:
        return float(f.read())


def summarise(name: str, per_seed: Dict[int, Dict[str, float]], metrics: Sequence[str],
              minutes: float) -> str:
    cells = []
    for metric in metrics:
        scale = 100 if metric.startswith('coco/') else 1  # COCO metrics are fractions
        values = [per_seed[seed][metric] * scale for seed in sorted(per_seed)]
        spread = statistics.stdev(values) if len(values) > 1 else float('nan')
        listed = ' / '.join(f'{v:.1f}' for v in values)
        cells.append(f'{statistics.mean(values):.1f} +- {spread:.1f} ({listed})')
    return f"| `{name}` | {' | '.join(cells)} | {len(per_seed)} | {minutes:.0f} |"


def run_seed(config: str, seed: int, work_dir: str, dry_run: bool) -> Optional[float]:
    """Train and test one seed; the minutes it took (None on a dry run)."""
    start = time.perf_counter()
    for command in run_commands(config, seed, work_dir):
        if dry_run:
            print(' '.join(command))
            continue
        if '{last_checkpoint}' in command:
            with open(osp.join(work_dir, 'last_checkpoint')) as f:
                checkpoint = f.read().strip()
            command = [checkpoint if c == '{last_checkpoint}' else c for c in command]
        subprocess.run(command, cwd=REPO, check=True)
    if dry_run:
        return None
    minutes = (time.perf_counter() - start) / 60
    with open(osp.join(work_dir, MINUTES_FILE), 'w') as f:
        f.write(f'{minutes:.2f}')
    return minutes


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    rows = []
    for config in args.configs:
        name = osp.splitext(osp.basename(config))[0]
        per_seed, total_minutes = {}, 0.0
        for seed in args.seeds:
            work_dir = osp.join(args.work_root, name, f'seed{seed}')
            minutes = finished_minutes(work_dir) if args.reuse else None
            if minutes is None:
                minutes = run_seed(config, seed, work_dir, args.dry_run)
            if minutes is not None:
                per_seed[seed] = read_test_metrics(work_dir)
                total_minutes += minutes
        if per_seed:
            rows.append(summarise(name, per_seed, args.metrics, total_minutes))
    if rows:
        print(f"\n| config | {' | '.join(args.metrics)} | seeds | minutes |")
        print(f"| --- | {' | '.join('---' for _ in args.metrics)} | ---: | ---: |")
        print('\n'.join(rows))


if __name__ == '__main__':
    main()
