"""Build the synthetic demo dataset (see ``mmplug_agg.datasets.demo_data``).

Example::

    python tools/misc/make_demo_data.py --out data/demo --num-train 200 --num-val 50

A complete folder with the same parameters is left as it is; ``--force`` replaces
a folder that is half-written, foreign or made with other parameters.
"""
import argparse
import sys
import time

from mmplug_agg.datasets.demo_data import (DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_OUT,
                                           DEFAULT_SEED, DEFAULT_SIZE, ensure_demo_data)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Build the synthetic shapes demo dataset.')
    parser.add_argument('--out', default=DEFAULT_OUT, help='output folder')
    parser.add_argument('--num-train', type=int, default=DEFAULT_NUM_TRAIN)
    parser.add_argument('--num-val', type=int, default=DEFAULT_NUM_VAL)
    parser.add_argument('--size', type=int, default=DEFAULT_SIZE, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED)
    parser.add_argument('--force', action='store_true',
                        help='replace an existing folder that does not match')
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    start = time.perf_counter()
    try:
        path = ensure_demo_data(args.out, num_train=args.num_train, num_val=args.num_val,
                                size=args.size, seed=args.seed, force=args.force)
    except (OSError, RuntimeError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f'demo data ready in {path} ({time.perf_counter() - start:.1f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
