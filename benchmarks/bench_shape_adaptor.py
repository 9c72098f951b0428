"""Shape Adaptor train step: ShapeAdaptorResNet vs the same ResNet without adaptors.

A step is forward + backward through every returned level, on the same input
and the same weights. Candidates beside the plain ResNet:

* ``pool matched``: a max-pool vs identity adaptor (``adaptor_type='pool'``)
  before each stride-2 stage start with factors just above 0.5, so every map has
  the plain ResNet's size and only the adaptors' own cost (pooling, two bilinear
  resizes, the mix, one host read of the alphas per step) is added;
* ``pool matched+resize``: the same with ``resize_outputs=True`` (detection);
* ``residual autotl matched``: the paper's AutoTL form (stem conv at stride 1, two
  stem adaptors, residual adaptors at the stage starts) with factors just above
  0.5: the same map sizes after the stem, plus the stem conv at full resolution;
* ``residual autotl``: AutoTL at its initial s = 0.55 (maps slightly larger);
* ``residual standard``: the default (6 adaptors at s = 0.561 from the image), whose
  early maps are much larger than the plain ResNet's, so it pays for its shape.

    python benchmarks/bench_shape_adaptor.py [--device cuda] [--depth 50] [--size 512]
                                             [--batch 2] [--iters 10] [--rounds 3]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_rounds, forward_backward, parse_args  # noqa: E402

import mmplug_agg  # noqa: E402,F401
from mmplug_agg.registry import MODEL_REGISTRIES  # noqa: E402


def extra_args(parser):
    parser.add_argument('--depth', type=int, default=50, choices=(18, 34, 50, 101))
    parser.add_argument('--size', type=int, default=512, help='input side (the input is '
                        'size x 1.5 size, rounded to 32)')
    parser.add_argument('--batch', type=int, default=2)


def main():
    args = parse_args(__doc__.splitlines()[0], extra_args)
    models = MODEL_REGISTRIES['mmdet']
    common = dict(depth=args.depth, out_indices=(0, 1, 2, 3), frozen_stages=-1,
                  norm_eval=False, init_cfg=None)
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
    stage_starts = tuple(sum(blocks[args.depth][:i]) for i in (1, 2, 3))
    matched = dict(type='ShapeAdaptorResNet', adaptor_type='pool',
                   adaptor_positions=stage_starts, alpha_init=-8.0, **common)
    autotl = dict(type='ShapeAdaptorResNet', mode='autotl', **common)
    candidates = {
        'ResNet (reference)': dict(type='ResNet', **common),
        'pool matched': matched,
        'pool matched+resize': dict(matched, resize_outputs=True),
        'residual autotl matched': dict(autotl, alpha_init=-8.0),
        'residual autotl': autotl,
        'residual standard': dict(type='ShapeAdaptorResNet', **common),
    }
    torch.manual_seed(0)
    reference = models.build(candidates['ResNet (reference)'])
    state = reference.state_dict()
    modules = {}
    for name, cfg in candidates.items():
        module = models.build(cfg).to(args.device)
        module.train()  # mmdet's ResNet.train returns None: no chaining
        module.load_state_dict(state, strict=False)  # the same weights; alphas are extra
        modules[name] = module
        if args.channels_last:
            module.to(memory_format=torch.channels_last)
    height = args.size // 32 * 32
    width = int(args.size * 1.5) // 32 * 32
    image = torch.rand(args.batch, 3, height, width, device=args.device)
    if args.channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for name, module in modules.items():
            shapes = [tuple(o.shape[-2:]) for o in module(image)]
            print(f'{name:<36}levels {shapes}')
    steps = {name: forward_backward(module, [image]) for name, module in modules.items()}
    results = compare_rounds(f'ResNet-{args.depth} forward+backward, input {tuple(image.shape)}',
                             steps, reference='ResNet (reference)', args=args)
    ref_ms = results['ResNet (reference)']['median_ms']
    for name in list(candidates)[1:]:
        overhead = results[name]['median_ms'] / ref_ms - 1
        print(f'{name}: {100 * overhead:+.1f}% step time vs the plain ResNet')


if __name__ == '__main__':
    main()
