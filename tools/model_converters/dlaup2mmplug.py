"""Convert ucbdrive/dla DLA-Up segmentation checkpoints (``dla34up``, ``dla102up``) to mmplug_agg.

Source layout (``dla_up.py``'s ``DLASeg``, saved by ``segment.py`` from a DataParallel
model as ``{'state_dict': ...}`` with ``module.`` prefixes): ``base.*`` (the DLA with its
ImageNet classifier ``base.fc`` and the unused projections of deep trees),
``dla_up.ida_<i>`` with ``proj_<k>`` (1x1 conv + BN, only where widths differ),
``up_<k>`` (depthwise deconvs) and ``node_<k>`` (3x3 conv + BN over a concatenation),
the classifier ``fc.0`` and ``up``, the fixed bilinear x2 deconv before the softmax.

Target (configs/dla34up_*, dla102up_*): ``backbone`` = ``DLA(arch)``, ``decode_head`` =
``DLAUpHead`` (``dla_up.stages.<i>.{projections.<k>, upsamples.<k>, nodes.<k - 1>}``,
``conv_seg``). ``up`` is checked to be the bilinear kernel and dropped: mmseg resizes the
logits bilinearly (``align_corners=False``), which equals that deconv inside the image and
only rescales all classes alike on the outermost pixel row and column (same argmax).

Example:
    python tools/model_converters/dlaup2mmplug.py dla102up_cityscapes.pth dla102up_mmplug.pth
    # then: load_from = 'dla102up_mmplug.pth' in configs/dla102up_cityscapes_832_poly.py
"""
import argparse
import math
import re
from pathlib import Path
from typing import Dict

import torch

from mmplug_agg.models.backbones import convert_dla_state_dict
from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, expected_state_dict
from mmplug_agg.utils.launch import UserFacingError, run_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
ARCH = "ucbdrive/dla DLA-Up segmentation (dla_up.py DLASeg)"
BLOCK = re.compile(r'^dla_up\.ida_(\d+)\.(proj|up|node)_(\d+)\.')
# Width of the deepest DLA level -> our config with that trunk.
CONFIGS = {512: 'dla34up_cityscapes_512x1024_80k.py', 1024: 'dla102up_cityscapes_832_poly.py'}
SEQUENTIAL = {'0': 'conv', '1': 'bn'}  # (conv, BN, ReLU) Sequentials -> ConvModule names


def bilinear_kernel(size: int) -> torch.Tensor:
    """The kernel ucbdrive's ``fill_up_weights`` writes into a ``size`` x ``size`` deconv."""
    factor = math.ceil(size / 2)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    ramp = 1 - (torch.arange(size, dtype=torch.float64) / factor - center).abs()
    return ramp[:, None] * ramp[None, :]


def convert_dlaup(source: SourceState) -> Dict[str, torch.Tensor]:
    """ucbdrive ``DLASeg`` keys -> DLA + DLAUpHead keys."""
    source.require_keys(['base.base_layer.0.weight', 'dla_up.ida_0.node_1.0.weight',
                         'fc.0.weight', 'up.weight'], ARCH)
    if 'dla_up.ida_0.proj_1.conv.conv_offset_mask.weight' in source:
        raise UserFacingError(f'{source.name} is a CenterNet checkpoint: use '
                              'centernet2mmplug.py')
    up = source.take('up.weight')
    if not torch.allclose(up.double(), bilinear_kernel(up.shape[-1]).expand_as(up), atol=1e-6):
        raise UserFacingError(f"{source.name}'s final 'up' deconv is not the fixed bilinear "
                              'kernel; mmseg cannot express a learnt one')
    source.skipped.append('up.weight')
    backbone, dropped = convert_dla_state_dict(source.take_prefix('base.'))
    source.skipped.extend(f'base.{key}' for key in dropped)
    converted = {f'backbone.{key}': value for key, value in backbone.items()}
    for key in source.keys():
        match = BLOCK.match(key)
        if not match or key in source.taken:
            continue
        stage, kind, index = match[1], match[2], int(match[3])
        rest = key[match.end():]
        head = f'decode_head.dla_up.stages.{stage}.'
        if kind == 'up':
            ours = f'{head}upsamples.{index}.{rest}'
        else:
            layer, _, name = rest.partition('.')
            part = SEQUENTIAL.get(layer)
            if part is None:
                continue  # reported as unmapped
            block = f'projections.{index}' if kind == 'proj' else f'nodes.{index - 1}'
            ours = f'{head}{block}.{part}.{name}'
        converted[ours] = source.take(key)
    converted['decode_head.conv_seg.weight'] = source.take('fc.0.weight')
    converted['decode_head.conv_seg.bias'] = source.take('fc.0.bias')
    return converted


def default_config(source: SourceState) -> str:
    width = source.shape('base.level5.root.conv.weight')[0]
    if width not in CONFIGS:
        raise UserFacingError(f'{source.name} has a {width}-channel last DLA level; '
                              f'mmplug_agg has DLA-Up configs for {sorted(CONFIGS)} '
                              f'({", ".join(CONFIGS.values())}): pass --config')
    return str(CONFIG_DIR / CONFIGS[width])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='a checkpoint of ucbdrive/dla segment.py (dla34up, dla102up)')
    parser.add_argument('dst', help='where to write the mmengine checkpoint')
    parser.add_argument('--config', help='our config to check the result against (default: '
                        'dla34up_cityscapes_512x1024_80k.py or dla102up_cityscapes_832_poly.py, '
                        'from the trunk width)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target = {}

    def convert(source: SourceState) -> Dict[str, torch.Tensor]:
        converted = convert_dlaup(source)
        target['config'] = args.config or default_config(source)
        print(f"target config: {target['config']}")
        return converted

    convert_checkpoint(args.src, args.dst, convert,
                       expected=lambda: expected_state_dict(target['config']),
                       meta=dict(converter='dlaup2mmplug'))


if __name__ == '__main__':
    run_cli(main)
