"""DenseCRF post-processing: time per image, permutohedral lattice vs exact kernels.

Two tables. First the Cityscapes case: the permutohedral CRF on one 512x1024
image with 19 classes and 10 mean-field iterations (DeepLab's VOC weights),
next to its set-up alone (lattice, splat/slice/blur matrices, blur taps) to
show what the iterations cost. Second, a small image where the exact method
(dense HW x HW kernels) is still possible: the speed-up of the lattice over it.

The image is a synthetic scene (``mmplug_agg.datasets.render_scene``: textured
background, saturated shapes, blur and pixel noise), so the lattice has about
as many vertices as on a photograph; the logits are a noisy one-hot of its
labels. Inference only (no gradients).

    python benchmarks/bench_dense_crf.py [--device cuda] [--height 512] [--width 1024]
                                         [--classes 19] [--iters 10] [--rounds 3]
                                         [--threads 1]
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_rounds, parse_args  # noqa: E402

from mmplug_agg.datasets import render_scene  # noqa: E402
from mmplug_agg.models.layers import DenseCRF  # noqa: E402
from mmplug_agg.models.layers.dense_crf import _LatticeKernels  # noqa: E402


def scene(height: int, width: int, classes: int, device: str, seed: int = 0):
    """An RGB image (1, 3, H, W) in 0..255 and noisy logits (1, classes, H, W)."""
    side = max(height, width)
    bgr, label, _ = render_scene(np.random.default_rng(seed), side)
    image = torch.from_numpy(np.ascontiguousarray(bgr[:height, :width, ::-1]))
    image = image.permute(2, 0, 1)[None].float()
    label = torch.from_numpy(label[:height, :width].astype(np.int64)) % classes
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.nn.functional.one_hot(label, classes).permute(2, 0, 1)[None].float()
    logits = logits + 2 * torch.randn(logits.shape, generator=gen)
    return image.to(device), logits.to(device)


def crf_step(crf: DenseCRF, logits: torch.Tensor, image: torch.Tensor):

    def step():
        with torch.no_grad():
            crf(logits, image)

    return step


def setup_step(crf: DenseCRF, image: torch.Tensor):
    batch, _, height, width = image.shape
    colours = image.permute(0, 2, 3, 1).reshape(batch, height * width, 3)

    def step():
        with torch.no_grad():
            _LatticeKernels(crf, colours, height, width, with_appearance=True)

    return step


def add_arguments(parser) -> None:
    parser.add_argument('--height', type=int, default=512)
    parser.add_argument('--width', type=int, default=1024)
    parser.add_argument('--classes', type=int, default=19)
    parser.add_argument('--small',
                        type=int,
                        nargs=2,
                        default=(48, 64),
                        metavar=('H', 'W'),
                        help='image size of the permutohedral vs exact table')


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=add_arguments)
    threads = f'{torch.get_num_threads()} thread(s)'

    image, logits = scene(args.height, args.width, args.classes, args.device)
    crf = DenseCRF()
    with torch.no_grad():
        kernels = _LatticeKernels(crf,
                                  image.permute(0, 2, 3, 1).reshape(1, -1, 3),
                                  args.height,
                                  args.width,
                                  with_appearance=True)
    pixels = args.height * args.width
    print(f'{args.height}x{args.width}: {kernels.lattice.num_vertices:,} lattice vertices for '
          f'{pixels:,} pixels ({6 * pixels:,} splat entries)')
    steps = {
        'permutohedral, 10 iterations': crf_step(crf, logits, image),
        'set-up only (lattice, blur taps)': setup_step(crf, image),
    }
    title = (f'DenseCRF {args.height}x{args.width}, {args.classes} classes, batch 1, '
             f'{threads}')
    compare_rounds(title, steps, 'permutohedral, 10 iterations', args)

    height, width = args.small
    image, logits = scene(height, width, args.classes, args.device, seed=1)
    steps = {
        'permutohedral, 10 iterations': crf_step(DenseCRF(), logits, image),
        'exact, 10 iterations': crf_step(DenseCRF(method='exact'), logits, image),
    }
    title = f'DenseCRF {height}x{width}, {args.classes} classes, batch 1, {threads}'
    results = compare_rounds(title, steps, 'exact, 10 iterations', args)
    ratio = results['permutohedral, 10 iterations']['speedup_vs_reference']
    print(f'permutohedral is {ratio:.1f}x the speed of exact at {height}x{width}')


if __name__ == '__main__':
    main()
