"""Plot the factors that shape adaptors learned during a training run (docs/shape_adaptor.md).

Reads the ``shape_factor_<k>`` scalars that ``ShapeAdaptorLoggerHook`` logged to
``<work-dir>/<timestamp>/vis_data/scalars.json`` (the latest run in the folder)
and draws each factor and the resulting overall stride over the iterations. With
``--baseline-work-dir`` the title also compares the final mIoU with a fixed-shape
run. The figure in the docs comes from the demo schedule (600 iterations, about 14
minutes each on one CPU core; ``python tools/misc/make_demo_data.py --out data/demo``
first)::

    python tools/train.py configs/shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py \\
        --work-dir work_dirs/sa_demo
    python docs/diagrams/make_shape_adaptor_plot.py --write-baseline-config \\
        work_dirs/sa_baseline_cfg.py
    python tools/train.py work_dirs/sa_baseline_cfg.py --work-dir work_dirs/sa_baseline
    python docs/diagrams/make_shape_adaptor_plot.py --work-dir work_dirs/sa_demo \\
        --baseline-work-dir work_dirs/sa_baseline

The baseline is the same half-width ResNet-18 (deep stem) without adaptors at mmseg's
usual output stride 8 (strides 1, 2, 1, 1 and dilations 1, 1, 2, 4), with the same
heads, data and schedule.
"""
import argparse
import glob
import json
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
FACTOR_KEY = re.compile(r'^shape_factor_(\d+)$')
STEM_STRIDE = 4  # the fixed stem of ShapeAdaptorResNet


BASELINE_CONFIG = """\
# Fixed-shape baseline of the Shape Adaptor demo (written by
# docs/diagrams/make_shape_adaptor_plot.py --write-baseline-config).
_base_ = [{demo_config!r}]

model = dict(
    type='EncoderDecoder',
    backbone=dict(
        _delete_=True,
        type='ResNetV1c',
        depth=18,
        stem_channels=32,
        base_channels=32,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        contract_dilation=True,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=None))
custom_hooks = []
"""
DEMO_CONFIG = osp.join(osp.dirname(osp.dirname(HERE)), 'configs',
                       'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py')


def read_scalars(work_dir: str) -> List[dict]:
    runs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not runs:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    with open(runs[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def factor_series(records: List[dict]) -> Tuple[List[int], Dict[int, List[float]]]:
    steps, series = [], {}
    for record in records:
        found = {int(m[1]): v for k, v in record.items() if (m := FACTOR_KEY.match(k))}
        if not found:
            continue
        steps.append(record['step'])
        for index, value in found.items():
            series.setdefault(index, []).append(value)
    if not steps:
        raise ValueError('no shape_factor_<k> scalars logged (is ShapeAdaptorLoggerHook on?)')
    return steps, series


def final_miou(records: List[dict]) -> Optional[float]:
    values = [r['mIoU'] for r in records if 'mIoU' in r]
    return values[-1] if values else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', help='work dir of the shape adaptor run')
    parser.add_argument('--baseline-work-dir', help='work dir of the fixed-shape run')
    parser.add_argument('--out', default=osp.join(HERE, 'shape_adaptor_factors.png'))
    parser.add_argument('--write-baseline-config', metavar='PATH',
                        help='write the fixed-shape baseline config to PATH and stop')
    args = parser.parse_args()
    if args.write_baseline_config:
        with open(args.write_baseline_config, 'w') as f:
            f.write(BASELINE_CONFIG.format(demo_config=DEMO_CONFIG))
        print(f'baseline config written to {args.write_baseline_config}')
        return 0
    if not args.work_dir:
        print('error: --work-dir is required (or --write-baseline-config)', file=sys.stderr)
        return 1
    try:
        records = read_scalars(args.work_dir)
        steps, series = factor_series(records)
        baseline = read_scalars(args.baseline_work_dir) if args.baseline_work_dir else None
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1

    fig, (ax_factor, ax_stride) = plt.subplots(1, 2, figsize=(10, 3.6))
    for index, values in sorted(series.items()):
        ax_factor.plot(steps, values, label=f'adaptor {index}')
    ax_factor.set(xlabel='iteration', ylabel='factor s = r1 + (r2 - r1) sigmoid(alpha)',
                  title='learned factors')
    ax_factor.legend()
    strides = []
    for i in range(len(steps)):
        product = 1.0
        for values in series.values():
            product *= values[i]
        strides.append(STEM_STRIDE / product)
    ax_stride.plot(steps, strides, color='black')
    ax_stride.set(xlabel='iteration', ylabel='overall output stride',
                  title='resulting output stride')
    title = 'Shape Adaptor, FCN ResNet-18 (half width), demo data'
    miou = final_miou(records)
    if miou is not None:
        title += f': mIoU {miou:.2f}'
        if baseline is not None and final_miou(baseline) is not None:
            title += f' vs fixed-shape baseline {final_miou(baseline):.2f}'
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'factors {[round(v[-1], 4) for _, v in sorted(series.items())]}, output stride '
          f'{strides[-1]:.2f}; figure written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
