"""AugFPN side by side with its references, in one run.

1. RoI extractors (forward + backward): ``SoftRoIExtractor`` (its CPU row
   gathers and mmcv's RoIAlign kernels) vs mmdet's
   ``SingleRoIExtractor`` and ``GenericRoIExtractor``, on a 4-level pyramid of an
   image of ``--shape`` (batch 2, 256 channels), at 512 and 2000 RoIs, with
   RoIAlign sampling 2x2 points per bin (AugFPN's official setting) and
   adaptively (mmdet 3's default, ``sampling_ratio=0``).
2. RoI features + box head (forward + backward, 512 RoIs, sampling 2x2): the four ways
   of turning a pyramid into box-head features side by side, with parameters and
   FLOPs (matrix products and convolutions, counted by torch's FlopCounterMode;
   RoIAlign itself is not counted): mmdet's ``SingleRoIExtractor`` and
   ``GenericRoIExtractor`` and AugFPN's ``SoftRoIExtractor``, each before mmdet's
   ``Shared2FCBBoxHead``, and PANet's adaptive feature pooling
   (``AllLevelRoIExtractor`` + ``AdaptiveFeaturePoolingBBoxHead``).
3. Whole detectors: ``configs/augfpn_faster_rcnn_r50.py`` (and the same with
   mmcv's RoIAlign kernels instead of the CPU row gathers) vs its fair baseline
   ``configs/augfpn_baseline_faster_rcnn_r50.py`` (FPN with AugFPN's recipe:
   RoIAlign sampling 2, gradient clipping) and ``fpn_faster_rcnn_r50.py`` as
   mmdet 3 ships it (R50, random weights): train-step and inference time and peak
   memory at ``--shape``. Goals: train <= 1.2x the baseline's time, inference <= 1.1x.

    python benchmarks/bench_augfpn.py [--device cuda] [--shape 800 1333] [--iters 10]
                                      [--part extractors|roi-features|detectors|both]
                                      [--goal-only]
"""
import importlib.util
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmdet.registry import MODELS
from timing import compare, forward_backward, parse_args, record

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
STRIDES = (4, 8, 16, 32)
SAMPLING_RATIOS = (2, 0)  # AugFPN's official 2x2 samples per bin, mmdet 3's adaptive


def load_tool(name: str):
    path = osp.join(REPO, 'tools', 'analysis_tools', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def random_rois(num: int, height: int, width: int, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(num, 2, generator=generator) * torch.tensor([width, height]) * 0.8
    wh = torch.rand(num, 2, generator=generator) ** 2 * torch.tensor([width, height]) * 0.5 + 4
    index = torch.randint(0, batch, (num, 1), generator=generator).float()
    return torch.cat([index, xy, xy + wh], dim=1)


def bench_extractors(args) -> None:
    init_default_scope('mmdet')
    height, width = args.shape
    feats = [torch.rand(2, 256, -(-height // s), -(-width // s), device=args.device,
                        requires_grad=True) for s in STRIDES]
    for sampling_ratio in SAMPLING_RATIOS:
        roi_layer = dict(type='RoIAlign', output_size=7, sampling_ratio=sampling_ratio)
        common = dict(roi_layer=roi_layer, out_channels=256, featmap_strides=list(STRIDES))
        extractors = {
            'SoftRoIExtractor (ours)': dict(type='SoftRoIExtractor', **common),
            'SoftRoIExtractor, mmcv RoIAlign': dict(type='SoftRoIExtractor',
                                                    pooling_impl='roi_layer', **common),
            'SingleRoIExtractor (mmdet)': dict(type='SingleRoIExtractor', **common),
            'GenericRoIExtractor sum (mmdet)': dict(type='GenericRoIExtractor', **common),
        }
        for num_rois in (512, 2000):
            rois = random_rois(num_rois, height, width, 2).to(args.device)
            steps = {}
            for name, cfg in extractors.items():
                module = MODELS.build(cfg).to(args.device)
                steps[name] = forward_backward(module, (feats, rois))
            compare(f'RoI extractors, {num_rois} RoIs, pyramid of {height}x{width}, '
                    f'sampling_ratio={sampling_ratio}', steps, 'SingleRoIExtractor (mmdet)',
                    args.device, args.iters, args.warmup)


class RoIFeatureHead(torch.nn.Module):
    """An RoI extractor and the box head it feeds, timed as one step."""

    def __init__(self, extractor: dict, head: dict) -> None:
        super().__init__()
        self.extractor = MODELS.build(extractor)
        self.head = MODELS.build(head)

    def forward(self, feats, rois):
        cls_score, bbox_pred = self.head(self.extractor(feats, rois))
        return cls_score.sum() + bbox_pred.sum()


def roi_feature_candidates() -> dict:
    common = dict(roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2),
                  out_channels=256, featmap_strides=list(STRIDES))
    head = dict(type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024,
                roi_feat_size=7, num_classes=80)
    afp_head = dict(head, type='AdaptiveFeaturePoolingBBoxHead', num_shared_fcs=2,
                    num_levels=len(STRIDES), fusion='max')
    return {
        'SingleRoIExtractor (mmdet)': (dict(type='SingleRoIExtractor', **common), head),
        'GenericRoIExtractor sum (mmdet)': (dict(type='GenericRoIExtractor', **common), head),
        'SoftRoIExtractor (AugFPN)': (dict(type='SoftRoIExtractor', **common), head),
        'adaptive feature pooling (PANet)': (dict(type='AllLevelRoIExtractor', **common),
                                             afp_head),
    }


def bench_roi_features(args) -> None:
    from torch.utils.flop_counter import FlopCounterMode
    init_default_scope('mmdet')
    height, width = args.shape
    feats = [torch.rand(2, 256, -(-height // s), -(-width // s), device=args.device,
                        requires_grad=True) for s in STRIDES]
    rois = random_rois(512, height, width, 2).to(args.device)
    steps = {}
    print(f"\n{'RoI features + box head':<36}{'params (M)':>11}{'GFLOPs / 512 RoIs':>19}")
    for name, (extractor, head) in roi_feature_candidates().items():
        module = RoIFeatureHead(extractor, head).to(args.device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(feats, rois)
        params = sum(p.numel() for p in module.parameters()) / 1e6
        print(f'{name:<36}{params:>11.2f}{counter.get_total_flops() / 1e9:>19.1f}')
        steps[name] = forward_backward(module, (feats, rois))
    compare(f'RoI features + Shared2FC box head, 512 RoIs, pyramid of {height}x{width}, '
            'sampling_ratio=2', steps, 'SingleRoIExtractor (mmdet)', args.device, args.iters,
            args.warmup)


DETECTOR_RUNS = {
    # name: (config, pooling_impl of the RoI extractors or None)
    'fpn_faster_rcnn_r50 (mmdet 3)': ('fpn_faster_rcnn_r50', None),
    'augfpn_baseline_faster_rcnn_r50': ('augfpn_baseline_faster_rcnn_r50', None),
    'augfpn_faster_rcnn_r50': ('augfpn_faster_rcnn_r50', None),
    'augfpn_faster_rcnn_r50, mmcv RoIAlign': ('augfpn_faster_rcnn_r50', 'roi_layer'),
}
DETECTOR_REFERENCE = 'augfpn_baseline_faster_rcnn_r50'  # FPN with AugFPN's recipe
GOAL_RUNS = (DETECTOR_REFERENCE, 'augfpn_faster_rcnn_r50')  # --goal-only


def bench_detectors(args) -> None:
    benchmark = load_tool('benchmark')
    results = {}
    runs = {name: run for name, run in DETECTOR_RUNS.items()
            if not args.goal_only or name in GOAL_RUNS}
    for name, (config, pooling_impl) in runs.items():
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'{config}.py'))
        cfg.model.backbone.init_cfg = None  # random weights: nothing to download
        if pooling_impl is not None:  # the consistent supervision extractor follows it
            cfg.model.roi_head.bbox_roi_extractor.pooling_impl = pooling_impl
        results[name] = benchmark.run_benchmark(cfg, args.shape, batch_size=2,
                                                num_iters=args.iters, warmup=args.warmup,
                                                mode='both', device=args.device)
    title = f'Faster R-CNN R50, batch 2 of {args.shape[0]}x{args.shape[1]} on {args.device}'
    print(f'\n{title} (goal: AugFPN train <= 1.2x, inference <= 1.1x {DETECTOR_REFERENCE})')
    print(f"{'config':<40}{'mode':<11}{'median ms':>11}{'peak MiB':>10}{'time/base':>10}")
    for mode in ('train', 'inference'):
        reference_ms = results[DETECTOR_REFERENCE][mode]['median_ms']
        rows = {}
        for name, result in results.items():
            row = result[mode]
            ratio = row['median_ms'] / reference_ms
            print(f"{name:<40}{mode:<11}{row['median_ms']:>11.1f}"
                  f"{row['peak_memory_mib']:>10.1f}{ratio:>9.2f}x")
            rows[name] = dict(median_ms=row['median_ms'], speedup_vs_reference=1 / ratio,
                              peak_mib=row['peak_memory_mib'])
        record(f'{title}, {mode}', DETECTOR_REFERENCE, rows)


def main() -> None:
    def extra(parser):
        parser.add_argument('--shape', type=int, nargs=2, default=(800, 1333), metavar=('H', 'W'))
        parser.add_argument('--part', choices=('extractors', 'roi-features', 'detectors', 'both'),
                            default='both')
        parser.add_argument('--goal-only', action='store_true',
                            help='whole detectors: only AugFPN and its fair baseline (the goal)')

    args = parse_args(__doc__.splitlines()[0], extra=extra)
    torch.manual_seed(0)
    if args.part in ('extractors', 'both'):
        bench_extractors(args)
    if args.part in ('roi-features', 'both'):
        bench_roi_features(args)
    if args.part in ('detectors', 'both'):
        bench_detectors(args)


if __name__ == '__main__':
    main()
