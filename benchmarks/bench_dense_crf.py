"""DenseCRF post-processing against pydensecrf, the reference implementation.

First table: one image of --height x --width (default 512x512) with 4 classes and
10 mean-field iterations at DeepLab v2's VOC settings, pydensecrf (Krähenbühl's
C++ code, float32, SSE; the `pydensecrf2` package) against ours with the same
weights and widths, for row normalisation (DeepLab's released code, pydensecrf's
NORMALIZE_AFTER) and symmetric normalisation (pydensecrf's default); before the
timing, the agreement of the two (labels, mean |Q difference|) is printed, so
the speed is compared at equal results. pydensecrf always runs on the CPU, ours
on --device. Times include everything from the tensors (lattice, iterations);
pydensecrf gets its unary and uint8 image ready-made. Second table: a small
image where the exact method (dense HW x HW kernels) is still possible.

The image is a synthetic scene (``mmplug_agg.datasets.render_scene``: textured
background, saturated shapes, blur and pixel noise), so the lattice has about
as many vertices as on a photograph; the logits are a noisy one-hot of its
labels. Inference only (no gradients). Measure one CPU thread with --threads 1.

    python benchmarks/bench_dense_crf.py [--device cuda] [--height 512] [--width 512]
                                         [--classes 4] [--iters 10] [--rounds 3]
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

try:
    import pydensecrf.densecrf as dcrf
except ImportError:  # the comparison needs it; the rest runs without
    dcrf = None


def scene(height: int, width: int, classes: int, device: str, seed: int = 0):
    """An RGB image (1, 3, H, W) of integer levels 0..255 and noisy logits (1, classes, H, W)."""
    side = max(height, width)
    bgr, label, _ = render_scene(np.random.default_rng(seed), side)
    image = torch.from_numpy(np.ascontiguousarray(bgr[:height, :width, ::-1]))
    image = image.permute(2, 0, 1)[None].float().round()
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


def pydensecrf_step(crf: DenseCRF, logits: torch.Tensor, image: torch.Tensor,
                    normalization: int):
    """pydensecrf with ``crf``'s settings; returns (step, marginals of one run)."""
    _, classes, height, width = logits.shape
    unary = -torch.log_softmax(logits[0].float().cpu(), 0).reshape(classes, -1)
    unary = np.ascontiguousarray(unary.numpy())
    rgb = np.ascontiguousarray(image[0].permute(1, 2, 0).cpu().numpy().astype(np.uint8))

    def run():
        model = dcrf.DenseCRF2D(width, height, classes)
        model.setUnaryEnergy(unary)
        model.addPairwiseGaussian(sxy=crf.smoothness_xy_std, compat=crf.smoothness_weight,
                                  normalization=normalization)
        model.addPairwiseBilateral(sxy=crf.appearance_xy_std, srgb=crf.appearance_rgb_std,
                                   rgbim=rgb, compat=crf.appearance_weight,
                                   normalization=normalization)
        return np.array(model.inference(crf.num_iterations))

    return run, torch.from_numpy(run()).view(1, classes, height, width)


def add_arguments(parser) -> None:
    parser.add_argument('--height', type=int, default=512)
    parser.add_argument('--width', type=int, default=512)
    parser.add_argument('--classes', type=int, default=4)
    parser.add_argument('--preset', default='deeplabv2_voc')
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
    size = f'{args.height}x{args.width}, {args.classes} classes'

    steps, reference = {}, None
    for normalization in ('row', 'symmetric'):
        crf = DenseCRF(preset=args.preset, normalization=normalization)
        ours = f'ours, {normalization}'
        steps[ours] = crf_step(crf, logits, image)
        if dcrf is None:
            continue
        flag = dcrf.NORMALIZE_AFTER if normalization == 'row' else dcrf.NORMALIZE_SYMMETRIC
        theirs = f'pydensecrf, {normalization}'
        steps[theirs], q_ref = pydensecrf_step(crf, logits, image, flag)
        reference = reference or theirs
        with torch.no_grad():
            q = crf(logits, image).cpu()
        agreement = (q.argmax(1) == q_ref.argmax(1)).double().mean().item()
        print(f'{size}, {normalization}: labels agree on {100 * agreement:.3f}% of pixels, '
              f'mean |Q diff| {(q - q_ref).abs().mean().item():.2e}, '
              f'max {(q - q_ref).abs().max().item():.2e}')
    if reference is None:
        print('pydensecrf is not installed (pip install pydensecrf2): ours only')
        reference = 'ours, row'
    title = f'DenseCRF {size}, {args.preset}, batch 1, {args.device}, {threads}'
    results = compare_rounds(title, steps, reference, args)
    if dcrf is not None:
        for normalization in ('row', 'symmetric'):
            ratio = (results[f'pydensecrf, {normalization}']['median_ms'] /
                     results[f'ours, {normalization}']['median_ms'])
            print(f'{normalization}: ours is {ratio:.2f}x the speed of pydensecrf '
                  f'({args.device} vs its CPU)')

    height, width = args.small
    image, logits = scene(height, width, args.classes, args.device, seed=1)
    steps = {
        'permutohedral, 10 iterations': crf_step(DenseCRF(preset=args.preset), logits, image),
        'exact, 10 iterations': crf_step(DenseCRF(preset=args.preset, method='exact'), logits,
                                         image),
    }
    title = f'DenseCRF {height}x{width}, {args.classes} classes, batch 1, {threads}'
    results = compare_rounds(title, steps, 'exact, 10 iterations', args)
    ratio = results['permutohedral, 10 iterations']['speedup_vs_reference']
    print(f'permutohedral is {ratio:.1f}x the speed of exact at {height}x{width}')


if __name__ == '__main__':
    main()
