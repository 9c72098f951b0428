"""DLA-34 and DLA-102 forward+backward: ours vs timm's DLA, same weights, same input.

timm's model runs as ``features_only`` over levels 1-5 (its feature extractor),
ours with ``out_indices=(1, 2, 3, 4, 5)``, so both return the same maps. Besides
time and peak memory (timing.py) it prints the bytes each candidate saves for
backward: a device-independent measure of activation memory. ``--channels-last``
runs both in channels_last.

    python benchmarks/bench_dla.py [--device cuda] [--batch 8] [--size 512]
                                   [--iters 10] [--rounds 3] [--threads 1]
"""
import os
import sys

import timm
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import (compare_rounds, forward_backward, parse_args,  # noqa: E402
                    saved_for_backward_mib)

from mmplug_agg.models.backbones import DLA, convert_dla_state_dict  # noqa: E402

ARCHS = ('dla34', 'dla102')
LEVELS = (1, 2, 3, 4, 5)


def build(arch: str):
    reference = timm.create_model(arch, pretrained=False, features_only=True, out_indices=LEVELS)
    ours = DLA(arch, out_indices=LEVELS)
    full = timm.create_model(arch, pretrained=False)
    full.load_state_dict(reference.state_dict(), strict=False)
    ours.load_state_dict(convert_dla_state_dict(full.state_dict())[0])
    return {f'ours DLA {arch}': ours, f'timm {arch} features_only': reference}


def add_arguments(parser) -> None:
    parser.add_argument('--batch', type=int, default=2, help='images per batch')
    parser.add_argument('--size', type=int, default=None,
                        help='square image side (default 512 on CUDA, 224 on CPU)')


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=add_arguments)
    size = args.size or (512 if args.device.startswith('cuda') else 224)
    torch.manual_seed(0)
    image = torch.randn(args.batch, 3, size, size, device=args.device)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    image = image.contiguous(memory_format=memory_format)
    for arch in ARCHS:
        modules = {name: m.to(args.device, memory_format=memory_format).train()
                   for name, m in build(arch).items()}
        steps = {name: forward_backward(m, [image]) for name, m in modules.items()}
        title = (f'{arch}: batch {args.batch}, {size}x{size}, '
                 f'{"channels_last" if args.channels_last else "NCHW"}, '
                 f'{torch.get_num_threads()} thread(s)')
        compare_rounds(title, steps, f'timm {arch} features_only', args)
        print(f"{'candidate':<34}{'params':>12}{'saved for backward MiB':>26}")
        for name, module in modules.items():
            params = sum(p.numel() for p in module.parameters())
            print(f'{name:<34}{params:>12,}{saved_for_backward_mib(module, [image]):>26.1f}')
        del modules, steps


if __name__ == '__main__':
    main()
