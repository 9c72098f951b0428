"""Plot the factors that shape adaptors learned during the demo runs (docs/shape_adaptor.md).

Reads the ``shape_factor_<k>`` scalars that ``ShapeAdaptorLoggerHook`` logged to
``<work-dir>/<timestamp>/vis_data/scalars.json`` (the latest run in each folder)
and draws each run's factors over the iterations, with the final metric of the
run and of its fixed-shape baseline in the panel's title.

The runs in the docs are the quick variants of the three demo configs (the shared
2-core CPU of this project allows no more): ``--write-run-configs DIR`` writes them
and their fixed-shape baselines, then::

    python tools/misc/make_demo_data.py --out data/demo
    for run in fcn_sa fcn_base dla_sa dla_base det_sa det_base; do
        python tools/train.py DIR/$run.py --work-dir work_dirs/sa15_$run
    done
    python docs/diagrams/make_shape_adaptor_plot.py \\
        --run FCN=work_dirs/sa15_fcn_sa:work_dirs/sa15_fcn_base \\
        --run DLA-Up=work_dirs/sa15_dla_sa:work_dirs/sa15_dla_base \\
        --run "Faster R-CNN=work_dirs/sa15_det_sa:work_dirs/sa15_det_base"

Defaults: segmentation 128 px crops, batch 2, 120 iterations; detection the 256 px demo
images, batch 4, 100 iterations (two epochs); the alphas step every 10 iterations
(``--seg-iters``, ``--det-iters``, ``--alpha-step`` change them). The
FCN baseline is the same half-width ResNet-18 (deep stem) without adaptors at mmseg's
usual output stride 8 (strides 1, 2, 1, 1 and dilations 1, 1, 2, 4); the DLA-Up and
Faster R-CNN baselines are their fixed-shape demo configs, on the same data and
schedule.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

HERE = osp.dirname(osp.abspath(__file__))
CONFIGS = osp.join(osp.dirname(osp.dirname(HERE)), 'configs')
FACTOR_KEY = re.compile(r'^shape_factor_(\d+)$')
METRICS = ('mIoU', 'coco/bbox_mAP')

BASELINE_CONFIG = """\
# Fixed-shape baseline of the Shape Adaptor FCN demo (written by
# docs/diagrams/make_shape_adaptor_plot.py).
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
param_scheduler = {{{{_base_.param_scheduler.model}}}}  # no alphas: the weights' schedule only
custom_hooks = []
"""
SEG_QUICK = """\
_quick_crop = (128, 128)
_quick_iters = {seg_iters}
model = dict(data_preprocessor=dict(size=_quick_crop){model_extra})
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=_quick_crop, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=_quick_crop, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]))
val_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'), dict(type='Resize', scale=_quick_crop, keep_ratio=True),
    dict(type='LoadAnnotations'), dict(type='PackSegInputs')]))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=_quick_iters, val_interval=_quick_iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=_quick_iters))
_poly = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=_quick_iters,
              by_epoch=False)]
"""
DET_QUICK = """\
_quick_iters = {det_iters}  # batch 4: 50 iterations are an epoch of the 200 demo images
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=_quick_iters,
                 val_interval=_quick_iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(by_epoch=False,
                                                             interval=_quick_iters))
_warmup = [dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=_quick_iters)]
"""
SA_SCHEDULE = """\
param_scheduler = dict(
    model={warm},
    alpha=[dict(type='CosineAnnealingLR', T_max=_quick_iters, eta_min=0., begin=0,
                end=_quick_iters, by_epoch=False)])
optim_wrapper = dict(alpha_step={alpha_step})
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=1)]
"""
RUNS = {
    # name: (base config, quick settings, model extra, scheduler name, with adaptors)
    'fcn_sa': ('shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py', SEG_QUICK,
               ', backbone=dict(limit_dim=24)', '_poly', True),
    'fcn_base': ('fcn_baseline.py', SEG_QUICK, '', '_poly', False),
    'dla_sa': ('shape_adaptor_dla34up_cityscapes_demo.py', SEG_QUICK, '', '_poly', True),
    'dla_base': ('dla34up_cityscapes_512x1024_80k_demo.py', SEG_QUICK, '', '_poly', False),
    'det_sa': ('shape_adaptor_r50_faster_rcnn_1x_coco_demo.py', DET_QUICK, '', '_warmup', True),
    'det_base': ('fpn_faster_rcnn_r50_demo.py', DET_QUICK, '', '_warmup', False),
}


def write_run_configs(out_dir: str, seg_iters: int, det_iters: int, alpha_step: int) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, 'fcn_baseline.py'), 'w') as f:
        f.write(BASELINE_CONFIG.format(demo_config=osp.join(
            CONFIGS, 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py')))
    for name, (base, quick, model_extra, schedule, adaptive) in RUNS.items():
        base_path = base if base == 'fcn_baseline.py' else osp.join(CONFIGS, base)
        text = f'# Quick demo run {name} (docs/diagrams/make_shape_adaptor_plot.py).\n'
        text += f'_base_ = [{base_path!r}]\n\n'
        text += quick.format(model_extra=model_extra, seg_iters=seg_iters, det_iters=det_iters)
        if adaptive:
            text += SA_SCHEDULE.format(warm=schedule, alpha_step=alpha_step)
        else:
            text += f'param_scheduler = {schedule}\n'
        with open(osp.join(out_dir, f'{name}.py'), 'w') as f:
            f.write(text)
    print(f'run configs written to {out_dir}')


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


def final_metric(records: List[dict]) -> Optional[Tuple[str, float]]:
    for key in METRICS:
        values = [r[key] for r in records if key in r]
        if values:
            return key.split('/')[-1], values[-1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--run', action='append', default=[], metavar='TITLE=SA_DIR[:BASE_DIR]',
                        help='a shape adaptor run (and its fixed-shape baseline) to draw')
    parser.add_argument('--out', default=osp.join(HERE, 'shape_adaptor_factors.png'))
    parser.add_argument('--write-run-configs', metavar='DIR',
                        help='write the quick run configs (and baselines) to DIR and stop')
    parser.add_argument('--seg-iters', type=int, default=120)
    parser.add_argument('--det-iters', type=int, default=100)
    parser.add_argument('--alpha-step', type=int, default=10)
    args = parser.parse_args()
    if args.write_run_configs:
        write_run_configs(args.write_run_configs, args.seg_iters, args.det_iters,
                          args.alpha_step)
        return 0
    if not args.run:
        print('error: give at least one --run TITLE=SA_DIR[:BASE_DIR] (or --write-run-configs)',
              file=sys.stderr)
        return 1
    fig, axes = plt.subplots(1, len(args.run), figsize=(4.6 * len(args.run), 3.6),
                             squeeze=False)
    for ax, spec in zip(axes[0], args.run):
        title, _, dirs = spec.partition('=')
        sa_dir, _, base_dir = dirs.partition(':')
        try:
            records = read_scalars(sa_dir)
            steps, series = factor_series(records)
            baseline = read_scalars(base_dir) if base_dir else None
        except (OSError, ValueError) as err:
            print(f'error: {err}', file=sys.stderr)
            return 1
        for index, values in sorted(series.items()):
            ax.plot(steps, values, label=f'adaptor {index}')
        metric = final_metric(records)
        text = title
        if metric is not None:
            text += f'\n{metric[0]} {metric[1]:.2f}'
            base_metric = final_metric(baseline) if baseline else None
            if base_metric is not None:
                text += f' (fixed shape {base_metric[1]:.2f})'
        ax.set(xlabel='iteration', ylabel='factor s', title=text)
        ax.legend(fontsize=7)
        print(f'{title}: final factors {[round(v[-1], 4) for _, v in sorted(series.items())]}, '
              f'metric {metric}, baseline {final_metric(baseline) if baseline else None}')
    fig.suptitle('Shape Adaptor demo runs: learned factors s = r1 + (r2 - r1) sigmoid(alpha)')
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'figure written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
