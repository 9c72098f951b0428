"""BiFPN forward+backward: ours vs effdet's BiFpn vs mmdet's FPN, EfficientDet-D0 and D3 sizes.

All three get the same backbone-shaped features (EfficientNet-B0 or -B3 channels at
strides 8/16/32 of a square image) and produce 5 levels of the same width; the FPN
is RetinaNet's (extra P6/P7 convs on the input). Besides time and peak memory
(timing.py) it prints the bytes each candidate saves for backward, measured with
autograd's saved-tensor hooks: a device-independent measure of activation memory.

    python benchmarks/bench_bifpn.py [--device cuda] [--iters 10] [--batch 2]
                                     [--rounds 3] [--threads 1]

On a shared CPU, time drifts with the other processes' load: ``--rounds N`` times
the candidates N times in rotated order and ends with the median over rounds of
each time and speed ratio; ``--threads 1`` avoids the large slow-downs that
multi-threaded kernels suffer when another process holds a core.
"""
import os
import sys
from typing import Dict

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import (compare_rounds, forward_backward, parse_args,  # noqa: E402
                    saved_for_backward_mib)

from mmplug_agg.models.necks.bifpn import BiFPN  # noqa: E402

SETTINGS = {
    # name: (effdet config, backbone channels, BiFPN channels, cells, image size)
    'D0': ('efficientdet_d0', [40, 112, 320], 64, 3, 512),
    'D3': ('efficientdet_d3', [48, 136, 384], 160, 6, 896),
}


class ListInput(nn.Module):
    """Calls a neck with a fresh list of the maps (effdet's BiFpn appends to its input)."""

    def __init__(self, neck: nn.Module) -> None:
        super().__init__()
        self.neck = neck

    def forward(self, *feats: torch.Tensor):
        return self.neck(list(feats))


def build(setting: str) -> Dict[str, nn.Module]:
    from effdet.config import get_efficientdet_config
    from effdet.efficientdet import BiFpn
    from mmdet.models.necks import FPN

    name, in_channels, channels, repeats, size = SETTINGS[setting]
    config = get_efficientdet_config(name)
    config.image_size = (size, size)
    feature_info = [dict(num_chs=c, reduction=2**(3 + i)) for i, c in enumerate(in_channels)]
    return {
        f'ours BiFPN {setting}': BiFPN(in_channels, channels, num_outs=5, num_repeats=repeats),
        f'effdet BiFpn {setting}': BiFpn(config, feature_info),
        f'mmdet FPN {setting} (same width)': FPN(in_channels, channels, num_outs=5,
                                                 add_extra_convs='on_input'),
    }


def add_arguments(parser) -> None:
    parser.add_argument('--batch', type=int, default=2, help='images per batch')


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=add_arguments)
    torch.manual_seed(0)
    for setting, (_, in_channels, _, _, size) in SETTINGS.items():
        modules = {name: ListInput(m).to(args.device).train() for name, m in build(setting).items()}
        feats = [torch.randn(args.batch, c, size // 2**(3 + i), size // 2**(3 + i),
                             device=args.device) for i, c in enumerate(in_channels)]
        if args.channels_last:
            modules = {n: m.to(memory_format=torch.channels_last) for n, m in modules.items()}
            feats = [f.contiguous(memory_format=torch.channels_last) for f in feats]
        steps = {name: forward_backward(m, feats) for name, m in modules.items()}
        reference = f'effdet BiFpn {setting}'
        title = (f'BiFPN {setting}: batch {args.batch}, {size}x{size} image, '
                 f'features {[tuple(f.shape[1:]) for f in feats]}, '
                 f'{torch.get_num_threads()} thread(s)')
        compare_rounds(title, steps, reference, args)
        print(f"{'candidate':<34}{'params':>12}{'saved for backward MiB':>26}")
        for name, module in modules.items():
            params = sum(p.numel() for p in module.parameters())
            print(f'{name:<34}{params:>12,}{saved_for_backward_mib(module, feats):>26.1f}')


if __name__ == '__main__':
    main()
