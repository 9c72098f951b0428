"""Recursive Feature Pyramid train step: ours (ResNet-50 + FPN) vs mmdet's DetectoRS_ResNet + RFP.

Both unroll two passes (``rfp_steps=2``) over a ResNet-50 with a 256-wide FPN
and a 4 x 64 ASPP, with the same weights (mmdet's names are mapped onto ours),
on the same input. A step is forward + backward through every pyramid level.
The third candidate is ours with ``share_backbone_weights=True`` (one backbone
for both passes, later passes start from the first pass's un-fed stages).
With ``--sac`` every backbone is DetectoRS's (``DetectoRS_ResNet`` with
switchable atrous convolution in stages 2-4 and ConvAWS): the full DetectoRS,
mmdet's RFP against our wrapper around the same backbone class. Besides time
and peak memory (timing.py) it prints parameter counts and the bytes each
candidate saves for backward, a device-independent measure of activation
memory.

    python benchmarks/bench_rfp.py [--device cuda] [--batch 2] [--size 512] [--sac]
                                   [--iters 10] [--rounds 3] [--threads 1]
"""
import os
import re
import sys

import torch
from mmcv.ops import SAConv2d
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import (
    compare_rounds,
    forward_backward,
    parse_args,  # noqa: E402
    saved_for_backward_mib)

import mmplug_agg  # noqa: E402,F401
from mmplug_agg.models.backbones import RecursiveFeaturePyramid  # noqa: E402
from mmplug_agg.registry import MODEL_REGISTRIES  # noqa: E402

RESNET50 = dict(depth=50,
                num_stages=4,
                out_indices=(0, 1, 2, 3),
                frozen_stages=1,
                norm_cfg=dict(type='BN', requires_grad=True),
                norm_eval=True,
                style='pytorch')
FPN = dict(in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5)
NO_SAC = dict(sac=None, stage_with_sac=(False, ) * 4)
# Weight-standardised convs (ConvAWS) give unit-variance filters whatever the init, so
# with random weights and BN in eval mode (identity statistics) activations grow by
# about sqrt(fan_in) per conv and overflow, and mmcv's CPU deformable conv then
# segfaults; ImageNet weights are loaded with a rescaling that avoids this. Random-weight
# SAC runs therefore keep BN in training mode (same cost).
SAC = dict(conv_cfg=dict(type='ConvAWS'), sac=dict(type='SAC', use_deform=True),
           stage_with_sac=(False, True, True, True), norm_eval=False)


class MMDetRFP(nn.Module):
    """mmdet's pair as one module: DetectoRS_ResNet (returns the image too), then RFP."""

    def __init__(self, sac: bool) -> None:
        super().__init__()
        models = MODEL_REGISTRIES['mmdet']
        switch = SAC if sac else NO_SAC
        self.backbone = models.build(
            dict(type='DetectoRS_ResNet', output_img=True, **dict(RESNET50, **switch)))
        self.neck = models.build(
            dict(type='RFP',
                 rfp_steps=2,
                 aspp_out_channels=64,
                 aspp_dilations=(1, 3, 6, 1),
                 rfp_backbone=dict(type='DetectoRS_ResNet', rfp_inplanes=256,
                                   **dict(RESNET50, **switch)),
                 **FPN))

    def forward(self, x):
        return self.neck(self.backbone(x))


def ours(share: bool, sac: bool) -> RecursiveFeaturePyramid:
    backbone = (dict(type='DetectoRS_ResNet', **dict(RESNET50, **SAC)) if sac else dict(
        type='ResNet', **RESNET50))
    return RecursiveFeaturePyramid(backbone=backbone,
                                   neck=dict(type='FPN', **FPN),
                                   rfp_steps=2,
                                   aspp_out_channels=64,
                                   share_backbone_weights=share)


def copy_mmdet_weights(reference: MMDetRFP, model: RecursiveFeaturePyramid) -> None:
    """Load mmdet's weights into ours (its rfp_conv of stage s -> our feedback conv of s)."""
    fed = [stage for _, stage in model.feedback_paths]
    state = {f'backbone.{k}': v for k, v in reference.backbone.state_dict().items()}
    renames = (('lateral_convs.', 'neck.lateral_convs.'), ('fpn_convs.', 'neck.fpn_convs.'),
               ('rfp_aspp.', 'aspp.'), ('rfp_weight.', 'gate.'))
    for key, value in reference.neck.state_dict().items():
        match = re.fullmatch(r'rfp_modules\.(\d+)\.layer(\d)\.0\.rfp_conv\.(\w+)', key)
        if match:
            state[f'feedback_convs.{match[1]}.{fed.index(int(match[2]) - 1)}.{match[3]}'] = value
        elif key.startswith('rfp_modules.'):
            state['rfp_backbones.' + key[len('rfp_modules.'):]] = value
        else:
            prefix = next(p for p in renames if key.startswith(p[0]))
            state[prefix[1] + key[len(prefix[0]):]] = value
    model.load_state_dict(state, strict=True)


def add_arguments(parser) -> None:
    parser.add_argument('--batch', type=int, default=2, help='images per batch')
    parser.add_argument('--size',
                        type=int,
                        default=None,
                        help='square image side (default 512 on CUDA, 224 on CPU)')
    parser.add_argument('--sac', action='store_true',
                        help="DetectoRS_ResNet with SAC in every backbone (the full DetectoRS)")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=add_arguments)
    size = args.size or (512 if args.device.startswith('cuda') else 224)
    torch.manual_seed(0)
    reference = MMDetRFP(args.sac)
    reference.backbone.init_weights()
    reference.neck.init_weights()
    # mmdet's from-scratch init gives SAC's switch, contexts and offsets Kaiming weights;
    # start from SAC's own init, as ours does (and as both do with ImageNet weights).
    for module in reference.modules():
        if isinstance(module, SAConv2d):
            module.init_weights()
    separate = ours(share=False, sac=args.sac)
    copy_mmdet_weights(reference, separate)
    shared = ours(share=True, sac=args.sac)
    backbone = 'DetectoRS_ResNet-50 SAC' if args.sac else 'ResNet-50'
    reference_name = f'mmdet {"DetectoRS_ResNet-50 SAC" if args.sac else "DetectoRS_ResNet-50"}'
    reference_name += ' + RFP'
    modules = {
        reference_name: reference,
        f'ours RFP({backbone} + FPN)': separate,
        'ours RFP shared backbone': shared,
    }
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    modules = {
        name: m.to(args.device, memory_format=memory_format).train()
        for name, m in modules.items()
    }
    image = torch.randn(args.batch, 3, size, size, device=args.device)
    image = image.contiguous(memory_format=memory_format)
    with torch.no_grad():
        reference.eval()
        separate.eval()
        max_diff = max(
            (a - b).abs().max().item() for a, b in zip(reference(image), separate(image)))
        reference.train()
        separate.train()
    print(f'eval-mode max |ours - mmdet| over the 5 levels: {max_diff:.2e}')
    steps = {name: forward_backward(m, [image]) for name, m in modules.items()}
    title = (f'RFP {backbone} + FPN, rfp_steps=2: batch {args.batch}, {size}x{size}, '
             f'{"channels_last" if args.channels_last else "NCHW"}, '
             f'{torch.get_num_threads()} thread(s)')
    compare_rounds(title, steps, reference_name, args)
    print(f"{'candidate':<46}{'params':>14}{'saved for backward MiB':>26}")
    for name, module in modules.items():
        params = sum(p.numel() for p in module.parameters())
        print(f'{name:<46}{params:>14,}{saved_for_backward_mib(module, [image]):>26.1f}')


if __name__ == '__main__':
    main()
