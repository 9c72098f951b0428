"""DenseCRF post-processing against pydensecrf, the reference implementation.

First table: one image of --height x --width (default 512x512) with 4 classes and
10 mean-field iterations at the settings of each of --presets (default DeepLab v2's
and v1's VOC settings, measured side by side in one run), pydensecrf (Krähenbühl's
C++ code, float32, SSE; the `pydensecrf2` package) against ours with the same
weights and widths, for each of --normalizations (default row: DeepLab's released
code, pydensecrf's NORMALIZE_AFTER; symmetric is pydensecrf's default). Before the
timing, the agreement of the two (labels, mean |Q difference|) is printed, so the
speed is compared at equal results. pydensecrf always runs on the CPU, ours on
--device. Like with like: every call of either builds its lattices (ours from the
tensors; pydensecrf gets its unary and uint8 image ready-made). Ours is timed twice:
"cold" (cache_smoothness=False: both lattices built in every call, as pydensecrf
does) and "warm" (the default: the smoothness lattice, which depends on the image
size only, is kept from the previous call of that size). The candidates run in
turn, --best-of times (rotated), and the table gives each one's best CPU time of
the process (time.process_time, less disturbed than wall time by other processes
on a shared machine) and best wall time, and the ratio pydensecrf / ours (above
1.0: ours is faster), then the median over the rounds of each round's ratio (its
two calls moments apart, so less moved by the machine's drift). Second table: a
small image where the exact method (dense HW x HW kernels) is still possible.

The image is a synthetic scene (``mmplug_agg.datasets.render_scene``: textured
background, saturated shapes, blur and pixel noise) or, with --image photo,
matplotlib's sample photograph (Grace Hopper, 600x512, cropped, enlarged beyond;
``mmplug_agg.testing.sample_photo``): the harder case, its appearance lattice has
six times the scene's vertices at 512x512 (272k against 45k); the logits are a noisy
one-hot of its labels. Inference only (no gradients).
Measure one CPU thread with --threads 1.

    python benchmarks/bench_dense_crf.py [--device cuda] [--height 512] [--width 512]
                                         [--image scene|photo]
                                         [--classes 4] [--best-of 5] [--threads 1]
                                         [--presets deeplabv2_voc deeplabv1_voc]
                                         [--normalizations row symmetric]
"""
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_rounds, parse_args, record  # noqa: E402

from mmplug_agg.datasets import render_scene  # noqa: E402
from mmplug_agg.models.layers import DenseCRF  # noqa: E402
from mmplug_agg.testing import sample_photo  # noqa: E402

try:
    import pydensecrf.densecrf as dcrf
except ImportError:  # the comparison needs it; the rest runs without
    dcrf = None


def scene(height: int, width: int, classes: int, device: str, seed: int = 0):
    """An RGB image (1, 3, H, W) of integer levels 0..255 and noisy logits (1, classes, H, W)."""
    # render_scene draws shapes of at least 8 px within 0.6 of the side: small sizes are crops.
    side = max(height, width, 32)
    bgr, label, _ = render_scene(np.random.default_rng(seed), side)
    image = torch.from_numpy(np.ascontiguousarray(bgr[:height, :width, ::-1]))
    image = image.permute(2, 0, 1)[None].float().round()
    label = torch.from_numpy(label[:height, :width].astype(np.int64)) % classes
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.nn.functional.one_hot(label, classes).permute(2, 0, 1)[None].float()
    logits = logits + 2 * torch.randn(logits.shape, generator=gen)
    # Contiguous, as a model's scores are.
    return image.to(device), logits.contiguous().to(device)


def photo(height: int, width: int, classes: int, device: str, seed: int = 0):
    """matplotlib's sample photograph (cropped; enlarged beyond 600x512) and noisy logits
    of the nearest of four colour prototypes."""
    image, label = sample_photo(height, width)
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.nn.functional.one_hot(label % classes, classes).permute(2, 0, 1)[None]
    logits = logits.float() + 2 * torch.randn(logits.shape, generator=gen)
    return image.float().to(device), logits.contiguous().to(device)


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
    parser.add_argument('--image', choices=['scene', 'photo'], default='scene',
                        help='the synthetic scene or the sample photograph')
    parser.add_argument('--presets', nargs='+', default=['deeplabv2_voc', 'deeplabv1_voc'])
    parser.add_argument('--normalizations', nargs='+', default=['row'],
                        choices=['row', 'symmetric'])
    parser.add_argument('--best-of', type=int, default=5,
                        help='calls of each candidate in the first table (best kept)')
    parser.add_argument('--small',
                        type=int,
                        nargs=2,
                        default=(48, 64),
                        metavar=('H', 'W'),
                        help='image size of the permutohedral vs exact table')


def best_times(steps, device: str, best_of: int):
    """Each step's best CPU and wall seconds over ``best_of`` calls, the steps in turn.

    Also returns each step's CPU seconds round by round (one call of every step per
    round), for ratios of calls made moments apart.
    """
    names = list(steps)
    for step in steps.values():  # warm-up (and the warm candidates' kept lattice)
        step()
    cpu = {name: float('inf') for name in names}
    wall = dict(cpu)
    rounds = {name: [] for name in names}
    for index in range(best_of):
        for name in names[index % len(names):] + names[:index % len(names)]:
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            steps[name]()
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            rounds[name].append(time.process_time() - start_cpu)
            cpu[name] = min(cpu[name], rounds[name][-1])
            wall[name] = min(wall[name], time.perf_counter() - start_wall)
    return cpu, wall, rounds


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=add_arguments)
    threads = f'{torch.get_num_threads()} thread(s)'
    make = photo if args.image == 'photo' else scene
    image, logits = make(args.height, args.width, args.classes, args.device)
    size = f'{args.height}x{args.width} {args.image}, {args.classes} classes'

    steps, pairs = {}, []
    for preset in args.presets:
        for normalization in args.normalizations:
            setting = f'{preset}, {normalization}'
            crf = DenseCRF(preset=preset, normalization=normalization)
            cold = DenseCRF(preset=preset, normalization=normalization, cache_smoothness=False)
            steps[f'{setting}: ours, warm'] = crf_step(crf, logits, image)
            steps[f'{setting}: ours, cold'] = crf_step(cold, logits, image)
            if dcrf is None:
                continue
            flag = dcrf.NORMALIZE_AFTER if normalization == 'row' else dcrf.NORMALIZE_SYMMETRIC
            steps[f'{setting}: pydensecrf'], q_ref = pydensecrf_step(crf, logits, image, flag)
            pairs.append(setting)
            with torch.no_grad():
                q = crf(logits, image).cpu()
            agreement = (q.argmax(1) == q_ref.argmax(1)).double().mean().item()
            print(f'{size}, {setting}: labels agree on {100 * agreement:.3f}% of pixels, '
                  f'mean |Q diff| {(q - q_ref).abs().mean().item():.2e}, '
                  f'max {(q - q_ref).abs().max().item():.2e}')
    if dcrf is None:
        print('pydensecrf is not installed (pip install pydensecrf2): ours only')
    cpu, wall, rounds = best_times(steps, args.device, args.best_of)
    print(f'\nDenseCRF {size}, batch 1, ours on {args.device}, {threads}, best of '
          f'{args.best_of}')
    print(f"{'candidate':<44}{'CPU ms':>10}{'wall ms':>10}{'vs pydensecrf (CPU, wall)':>28}")
    results = {}
    for name in steps:
        reference = name.rsplit(': ', 1)[0] + ': pydensecrf'
        ratios = ''
        if reference in steps and name != reference:
            ratios = f'{cpu[reference] / cpu[name]:.2f}x, {wall[reference] / wall[name]:.2f}x'
        print(f'{name:<44}{1e3 * cpu[name]:>10.1f}{1e3 * wall[name]:>10.1f}{ratios:>28}')
        results[name] = dict(median_ms=1e3 * wall[name], cpu_ms=1e3 * cpu[name])
        if reference in steps:
            results[name]['speedup_vs_reference'] = wall[reference] / wall[name]
    for setting in pairs:
        for kind in ('warm', 'cold'):
            name = f'{setting}: ours, {kind}'
            # The machine's speed drifts between rounds; a ratio within one round
            # (the two calls moments apart) drifts less.
            paired = np.median(np.array(rounds[f'{setting}: pydensecrf']) / np.array(rounds[name]))
            print(f'{setting}, {kind}: ours is {cpu[f"{setting}: pydensecrf"] / cpu[name]:.2f}x '
                  f'the speed of pydensecrf (CPU time; ours on {args.device}); median of '
                  f'the per-round ratios {paired:.2f}x')
    record(f'DenseCRF {size}, best of {args.best_of}, {args.device}, {threads}',
           'pydensecrf (per setting)', results)

    preset = args.presets[0]
    height, width = args.small
    image, logits = scene(height, width, args.classes, args.device, seed=1)
    steps = {
        'permutohedral, 10 iterations': crf_step(DenseCRF(preset=preset), logits, image),
        'exact, 10 iterations': crf_step(DenseCRF(preset=preset, method='exact'), logits,
                                         image),
    }
    title = f'DenseCRF {height}x{width}, {args.classes} classes, batch 1, {threads}'
    results = compare_rounds(title, steps, 'exact, 10 iterations', args)
    ratio = results['permutohedral, 10 iterations']['speedup_vs_reference']
    print(f'permutohedral is {ratio:.1f}x the speed of exact at {height}x{width}')


if __name__ == '__main__':
    main()
