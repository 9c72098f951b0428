"""AugFPN side by side with its references, in one run.

1. RoI extractors (forward + backward): ``SoftRoIExtractor`` vs mmdet's
   ``SingleRoIExtractor`` and ``GenericRoIExtractor``, on a 4-level pyramid of an
   image of ``--shape`` (batch 2, 256 channels), at 512 and 2000 RoIs, with
   RoIAlign sampling 2x2 points per bin (AugFPN's official setting) and
   adaptively (mmdet 3's default, ``sampling_ratio=0``).
2. Whole detectors: ``configs/augfpn_faster_rcnn_r50.py`` vs
   ``configs/fpn_faster_rcnn_r50.py`` as mmdet 3 ships it and with the paper's
   RoIAlign sampling (R50, random weights): train-step and inference time and
   peak memory at ``--shape``. Goals: train <= 1.2x FPN's time, inference <= 1.1x.

    python benchmarks/bench_augfpn.py [--device cuda] [--shape 800 1333] [--iters 10]
                                      [--part extractors|detectors|both]
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


def bench_detectors(args) -> None:
    benchmark = load_tool('benchmark')
    results = {}
    for name in ('fpn_faster_rcnn_r50', 'fpn_faster_rcnn_r50 sampling 2', 'augfpn_faster_rcnn_r50'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'{name.split()[0]}.py'))
        cfg.model.backbone.init_cfg = None  # random weights: nothing to download
        if name.endswith('sampling 2'):  # the paper's FPN baseline (mmdet v1's RoIAlign)
            cfg.model.roi_head.bbox_roi_extractor.roi_layer.sampling_ratio = 2
        results[name] = benchmark.run_benchmark(cfg, args.shape, batch_size=2,
                                                num_iters=args.iters, warmup=args.warmup,
                                                mode='both', device=args.device)
    title = f'Faster R-CNN R50, batch 2 of {args.shape[0]}x{args.shape[1]} on {args.device}'
    print(f'\n{title}')
    print(f"{'config':<32}{'mode':<11}{'median ms':>11}{'peak MiB':>10}{'time/FPN':>10}")
    for mode in ('train', 'inference'):
        reference_ms = results['fpn_faster_rcnn_r50'][mode]['median_ms']
        rows = {}
        for name, result in results.items():
            row = result[mode]
            ratio = row['median_ms'] / reference_ms
            print(f"{name:<32}{mode:<11}{row['median_ms']:>11.1f}"
                  f"{row['peak_memory_mib']:>10.1f}{ratio:>9.2f}x")
            rows[name] = dict(median_ms=row['median_ms'], speedup_vs_reference=1 / ratio,
                              peak_mib=row['peak_memory_mib'])
        record(f'{title}, {mode}', 'fpn_faster_rcnn_r50', rows)


def main() -> None:
    def extra(parser):
        parser.add_argument('--shape', type=int, nargs=2, default=(800, 1333), metavar=('H', 'W'))
        parser.add_argument('--part', choices=('extractors', 'detectors', 'both'), default='both')

    args = parse_args(__doc__.splitlines()[0], extra=extra)
    torch.manual_seed(0)
    if args.part in ('extractors', 'both'):
        bench_extractors(args)
    if args.part in ('detectors', 'both'):
        bench_detectors(args)


if __name__ == '__main__':
    main()
