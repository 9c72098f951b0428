"""DLAUpHead vs mmseg's FPNHead, DLAUpNeck vs mmdet's CTResNetNeck and FPN.

Same DLA-34 input pyramid for both sides of each comparison (64/128/256/512
channels at strides 4, 8, 16, 32), forward + backward:

* head: a 512x1024 Cityscapes crop, batch 2, 19 classes, BN, no dropout;
  FPNHead (128 channels) reads the same four levels, as in mmseg's Semantic FPN
  minus the FPN neck;
* single-map neck: a 512x512 CenterNet crop, batch 2; DLAUpNeck in CenterNet's
  form (sum nodes, 3x3 projections) against CTResNetNeck (three conv +
  deconv stages from the stride-32 map, 256/128/64 filters), both with DCNv2
  and both with plain convs;
* pyramid neck: an 800x1344 COCO image, batch 1, 256 channels, 5 levels,
  against mmdet's FPN.

``--scale`` shrinks every image side by that factor (rounded to a multiple of
32), ``--only head|single|pyramid`` runs one comparison, ``--no-dcn`` skips the
deformable pair (slow on the CPU); ``--rounds N`` repeats each comparison in
rotated order and prints median speed-ups. Example, a quick CPU check:
``python benchmarks/bench_dlaup.py --scale 0.25 --iters 5 --warmup 2 --rounds 3``.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_rounds, forward_backward, parse_args  # noqa: E402

import mmplug_agg  # noqa: E402,F401
from mmplug_agg.models.decode_heads import DLAUpHead  # noqa: E402
from mmplug_agg.models.necks import DLAUpNeck  # noqa: E402

DLA34 = [64, 128, 256, 512]  # DLA-34 levels 2..5
DCN = dict(type='DCNv2', deform_groups=1)


def scaled(args, height, width):
    """``height`` x ``width`` times ``--scale``, each side a multiple of 32 (at least 32)."""
    return tuple(max(32, int(round(side * args.scale / 32)) * 32) for side in (height, width))


def pyramid(args, height, width, batch):
    """DLA-34-like levels at strides 4..32 of a ``height`` x ``width`` image."""
    height, width = scaled(args, height, width)
    gen = torch.Generator().manual_seed(0)
    levels = []
    for i, channels in enumerate(DLA34):
        stride = 4 * 2**i
        x = torch.randn(batch, channels, -(-height // stride), -(-width // stride), generator=gen)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        levels.append(x.to(args.device).requires_grad_())
    return levels, f'{height}x{width}, batch {batch}'


def steps_for(args, modules, inputs):
    steps = {}
    for name, module in modules.items():
        module = module.to(args.device).train()
        if args.channels_last:
            module = module.to(memory_format=torch.channels_last)
        steps[name] = forward_backward(module, [inputs])
    return steps


def bench_head(args):
    from mmseg.models.decode_heads import FPNHead
    common = dict(num_classes=19,
                  dropout_ratio=-1,
                  norm_cfg=dict(type='BN', requires_grad=True),
                  align_corners=False)
    modules = {
        'mmseg FPNHead(128)':
        FPNHead(in_channels=DLA34,
                in_index=[0, 1, 2, 3],
                feature_strides=[4, 8, 16, 32],
                channels=128,
                **common),
        'DLAUpHead (paper)':
        DLAUpHead(in_channels=DLA34, **common),
        'DLAUpHead(bilinear)':
        DLAUpHead(in_channels=DLA34, upsample_mode='bilinear', **common),
        'DLAUpHead(sum, 3x3)':
        DLAUpHead(in_channels=DLA34, node_type='sum', projection_kernel_size=3, **common),
    }
    inputs, size = pyramid(args, 512, 1024, 2)
    return f'DLA-34 head, {size}', steps_for(args, modules, inputs), 'mmseg FPNHead(128)'


def bench_single(args):
    from mmdet.models.necks import CTResNetNeck
    centernet = dict(node_type='sum', projection_kernel_size=3)
    modules = {
        'mmdet CTResNetNeck': CTResNetNeck(512, (256, 128, 64), (4, 4, 4), use_dcn=False),
        'DLAUpNeck(single, sum)': DLAUpNeck(DLA34, **centernet),
    }
    if not args.no_dcn:
        modules.update({
            'mmdet CTResNetNeck(DCNv2)': CTResNetNeck(512, (256, 128, 64), (4, 4, 4)),
            'DLAUpNeck(single, sum, DCNv2)': DLAUpNeck(DLA34, conv_cfg=DCN, **centernet),
        })
    inputs, size = pyramid(args, 512, 512, 2)
    return f'CenterNet neck, {size}', steps_for(args, modules, inputs), 'mmdet CTResNetNeck'


def bench_pyramid(args):
    from mmdet.models.necks import FPN
    modules = {
        'mmdet FPN': FPN(in_channels=DLA34, out_channels=256, num_outs=5),
        'DLAUpNeck(pyramid)': DLAUpNeck(DLA34, out_mode='pyramid', out_channels=256, num_outs=5),
    }
    inputs, size = pyramid(args, 800, 1344, 1)
    return f'Pyramid neck, {size}', steps_for(args, modules, inputs), 'mmdet FPN'


def main():

    def extra(parser):
        parser.add_argument('--only', choices=['head', 'single', 'pyramid'])
        parser.add_argument('--scale',
                            type=float,
                            default=1.0,
                            help='shrink (or grow) every image side by this factor')
        parser.add_argument('--no-dcn',
                            action='store_true',
                            help='skip the DCNv2 pair of the single-map comparison')

    args = parse_args(__doc__.splitlines()[0], extra)
    torch.manual_seed(0)
    benches = dict(head=bench_head, single=bench_single, pyramid=bench_pyramid)
    for name, bench in benches.items():
        if args.only in (None, name):
            compare_rounds(*bench(args), args)


if __name__ == '__main__':
    main()
