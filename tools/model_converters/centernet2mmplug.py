"""Convert CenterNet's official DLA-34 detector (``ctdet_coco_dla_2x.pth``) to mmplug_agg.

Source layout (xingyizhou/CenterNet, ``pose_dla_dcn.py``): ``base.*`` (DLA-34 with its
ImageNet classifier ``base.fc`` and the unused projections of its two-level trees),
``dla_up.ida_<i>`` and ``ida_up`` with ``proj_<k>``/``node_<k>`` = DCNv2 ``DCN``
(``conv.weight``, ``conv.bias``, ``conv.conv_offset_mask``) + ``actf.0`` (BN), and
``up_<k>`` deconvs; heads ``hm``, ``wh``, ``reg`` (conv 3x3, ReLU, conv 1x1).

Target (configs/dla34_centernet_*): ``backbone`` = ``DLA('dla34')``, ``neck`` =
``DLAUpNeck`` (``dla_up.stages.<i>`` and ``ida_up`` with ``projections.<k>``,
``upsamples.<k>``, ``nodes.<k - 1>``; mmcv ``ModulatedDeformConv2dPack`` +  BN), and
mmdet's ``CenterNetHead`` (``heatmap_head``, ``wh_head``, ``offset_head``).

* DCNv2's ``conv_offset_mask`` and mmcv's ``conv_offset`` order their 27 channels the
  same way (18 offsets, tap-major (dy, dx) pairs, then 9 mask logits; both split them
  with ``chunk(3)``), so they are copied as they are.
* mmcv's deformable conv in a ConvModule with BN has no bias; DCN's bias feeds BN
  directly, so it is folded into the BN's running mean (``mean - bias``): the same
  function in eval mode, and in training mode too (batch statistics absorb it).
* Dropped on purpose: ``base.fc.*`` (ImageNet classifier) and the projections the DLA
  trees deeper than one level compute and never use.

Example:
    python tools/model_converters/centernet2mmplug.py ctdet_coco_dla_2x.pth \\
        centernet_dla34_mmplug.pth
    # then: python tools/test.py configs/dla34_centernet_official_coco.py \\
    #           centernet_dla34_mmplug.pth
"""
import argparse
import re
from pathlib import Path
from typing import Dict

import torch

from mmplug_agg.models.backbones import convert_dla_state_dict
from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, expected_state_dict
from mmplug_agg.utils.launch import run_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
DEFAULT_CONFIG = CONFIG_DIR / 'dla34_centernet_official_coco.py'
ARCH = "CenterNet DLA-34 ctdet (pose_dla_dcn 'dla' with hm/wh/reg heads)"
BLOCK = re.compile(r'^(dla_up\.ida_(\d+)|ida_up)\.(proj|up|node)_(\d+)\.')
HEADS = {'hm': 'heatmap_head', 'wh': 'wh_head', 'reg': 'offset_head'}
BN_KEYS = ('weight', 'bias', 'running_var')


def deform_conv_block(source: SourceState, theirs: str, ours: str) -> Dict[str, torch.Tensor]:
    """One ``DeformConv`` (DCN + BN) -> one ConvModule(DCNv2, BN), DCN's bias folded."""
    bias = source.take(f'{theirs}conv.bias')
    out = {f'{ours}conv.weight': source.take(f'{theirs}conv.weight'),
           f'{ours}conv.conv_offset.weight': source.take(f'{theirs}conv.conv_offset_mask.weight'),
           f'{ours}conv.conv_offset.bias': source.take(f'{theirs}conv.conv_offset_mask.bias'),
           f'{ours}bn.running_mean': source.take(f'{theirs}actf.0.running_mean') - bias}
    for key in BN_KEYS:
        out[f'{ours}bn.{key}'] = source.take(f'{theirs}actf.0.{key}')
    counter = f'{theirs}actf.0.num_batches_tracked'
    if counter in source:  # absent in checkpoints of torch < 0.4.1
        out[f'{ours}bn.num_batches_tracked'] = source.take(counter)
    return out


def convert_centernet(source: SourceState) -> Dict[str, torch.Tensor]:
    """CenterNet ``DLASeg`` keys -> DLA + DLAUpNeck + CenterNetHead keys."""
    source.require_keys(['base.base_layer.0.weight',
                         'dla_up.ida_0.proj_1.conv.conv_offset_mask.weight',
                         'ida_up.proj_1.conv.weight', 'hm.0.weight', 'wh.0.weight',
                         'reg.0.weight'], ARCH)
    backbone, dropped = convert_dla_state_dict(source.take_prefix('base.'))
    source.skipped.extend(f'base.{key}' for key in dropped)
    converted = {f'backbone.{key}': value for key, value in backbone.items()}

    blocks = {}
    for key in source.keys():
        match = BLOCK.match(key)
        if match:
            blocks[match[0]] = match
    for theirs, match in sorted(blocks.items()):
        stage = f'dla_up.stages.{match[2]}' if match[2] is not None else 'ida_up'
        index = int(match[4])
        if match[3] == 'up':
            converted[f'neck.{stage}.upsamples.{index}.weight'] = source.take(f'{theirs}weight')
        elif match[3] == 'proj':
            ours = f'neck.{stage}.projections.{index}.'
            converted.update(deform_conv_block(source, theirs, ours))
        else:  # node_k merges input k: our nodes are numbered from the first merge
            converted.update(deform_conv_block(source, theirs, f'neck.{stage}.nodes.{index - 1}.'))

    for theirs, ours in HEADS.items():
        for layer in ('0', '2'):
            for kind in ('weight', 'bias'):
                converted[f'bbox_head.{ours}.{layer}.{kind}'] = source.take(
                    f'{theirs}.{layer}.{kind}')
    return converted


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help="CenterNet checkpoint, e.g. ctdet_coco_dla_2x.pth")
    parser.add_argument('dst', help='where to write the mmengine checkpoint')
    parser.add_argument('--config', default=str(DEFAULT_CONFIG),
                        help='our config to check the result against (default: %(default)s)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    convert_checkpoint(args.src, args.dst, convert_centernet,
                       expected=lambda: expected_state_dict(args.config),
                       meta=dict(converter='centernet2mmplug'))


if __name__ == '__main__':
    run_cli(main)
