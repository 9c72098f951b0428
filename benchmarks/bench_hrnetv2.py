"""HRNetV2Head vs mmseg's FCNHead(resize_concat), HRNetV2pNeck vs mmdet's HRFPN.

Same inputs for both sides of each comparison, forward + backward:

* head: the four HRNetV2-W48 branches of a 512x1024 Cityscapes crop, batch 2
  (48/96/192/384 channels at 1/4 .. 1/32), 19 classes, BN, no dropout;
* neck: the four HRNetV2p-W32 branches of an 800x1333 COCO image padded to
  800x1344 (mmdet pads to a multiple of 32; HRFPN needs exact 2x size ratios),
  batch 1, 256 output channels, 5 levels.

``--head-only`` / ``--neck-only`` run one of them; ``--rounds N`` repeats the
comparison and prints median speed-ups (for shared machines). Example:
``python benchmarks/bench_hrnetv2.py --iters 3 --warmup 1 --rounds 3``.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import compare_rounds, forward_backward, parse_args  # noqa: E402

import mmplug_agg  # noqa: E402,F401
from mmplug_agg.models.decode_heads import HRNetV2Head  # noqa: E402
from mmplug_agg.models.necks import HRNetV2pNeck  # noqa: E402

W48 = [48, 96, 192, 384]
W32 = [32, 64, 128, 256]


def branches(widths, height, width, batch, device, channels_last):
    """Backbone-like inputs (requiring grad, as a backbone's outputs do)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, channels in enumerate(widths):
        stride = 4 * 2**i
        x = torch.randn(batch, channels, height // stride, width // stride, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(x.to(device).requires_grad_())
    return out


def prepare(module, device, channels_last):
    module = module.to(device).train()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def bench_head(args):
    from mmseg.models.decode_heads import FCNHead
    common = dict(num_classes=19,
                  dropout_ratio=-1,
                  norm_cfg=dict(type='BN', requires_grad=True),
                  align_corners=False)
    fcn = FCNHead(in_channels=W48,
                  in_index=(0, 1, 2, 3),
                  channels=sum(W48),
                  input_transform='resize_concat',
                  kernel_size=1,
                  num_convs=1,
                  concat_input=False,
                  **common)
    ours = HRNetV2Head(in_channels=W48, **common)
    concat_first = HRNetV2Head(in_channels=W48, project_first=False, **common)
    for head in (ours, concat_first):
        head.load_state_dict(fcn.state_dict())
    inputs = branches(W48, 512, 1024, 2, args.device, args.channels_last)
    modules = {
        'mmseg FCNHead(resize_concat)': fcn,
        'HRNetV2Head': ours,
        'HRNetV2Head(project_first=False)': concat_first
    }
    steps = {
        name: forward_backward(prepare(m, args.device, args.channels_last), [inputs])
        for name, m in modules.items()
    }
    return 'HRNetV2-W48 head, 512x1024 crop, batch 2', steps, 'mmseg FCNHead(resize_concat)'


def bench_neck(args):
    from mmdet.models.necks import HRFPN
    hrfpn = HRFPN(in_channels=W32, out_channels=256)
    ours = HRNetV2pNeck(in_channels=W32, out_channels=256)
    concat_first = HRNetV2pNeck(in_channels=W32, out_channels=256, project_first=False)
    for neck in (ours, concat_first):
        neck.load_state_dict(hrfpn.state_dict())
    inputs = branches(W32, 800, 1344, 1, args.device, args.channels_last)
    modules = {
        'mmdet HRFPN': hrfpn,
        'HRNetV2pNeck': ours,
        'HRNetV2pNeck(project_first=False)': concat_first
    }
    steps = {
        name: forward_backward(prepare(m, args.device, args.channels_last), [inputs])
        for name, m in modules.items()
    }
    return 'HRNetV2p-W32 neck, 800x1344 (padded 800x1333), batch 1', steps, 'mmdet HRFPN'


def main():

    def extra(parser):
        parser.add_argument('--head-only', action='store_true')
        parser.add_argument('--neck-only', action='store_true')

    args = parse_args(__doc__.splitlines()[0], extra)
    torch.manual_seed(0)
    if not args.neck_only:
        compare_rounds(*bench_head(args), args)
    if not args.head_only:
        compare_rounds(*bench_neck(args), args)


if __name__ == '__main__':
    main()
