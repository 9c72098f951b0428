"""Convert an official (ucbdrive/dla) or timm DLA checkpoint to mmplug_agg's DLA keys.

The classifier and the projections that the official code computes and discards in
deep trees are dropped; the stem, conv levels and projections are renamed to mmcv
``ConvModule`` names. The result is checked strictly (keys and shapes) against
``DLA(arch)``: the ``--arch`` given, or else the one architecture whose tensors the
checkpoint has (the tool names it). As every converter here (``mmplug_agg/utils/
conversion.py``), it logs the file's sha256, the keys dropped on purpose and any it
could not place, refuses a checkpoint of another architecture with one line, writes
nothing if anything does not fit, and writes an mmengine checkpoint.

Example:
    python tools/model_converters/dla2mmplug.py dla34-ba72cf86.pth dla34_mmplug.pth --arch dla34
    # then in a config:
    # backbone=dict(type='DLA', arch='dla34',
    #               init_cfg=dict(type='Pretrained', checkpoint='dla34_mmplug.pth'))
"""
import argparse
from typing import Dict, List, Mapping, Optional

import torch

from mmplug_agg.models.backbones import DLA, DLA_ARCHS, convert_dla_state_dict
from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, match_state_dict
from mmplug_agg.utils.launch import UserFacingError, run_cli

ARCH = 'DLA ImageNet classifier (ucbdrive/dla or timm dla.py)'
REQUIRED_KEYS = ('base_layer.0.weight', 'level0.0.weight', 'level1.0.weight',
                 'level5.root.conv.weight')


def convert_dla(source: SourceState) -> Dict[str, torch.Tensor]:
    """ucbdrive/timm DLA keys -> :class:`DLA` keys; the classifier is dropped on purpose."""
    if 'base.base_layer.0.weight' in source:
        raise UserFacingError(f'{source.name} holds a DLA inside a detector or segmentor '
                              '(base.* keys): use centernet2mmplug.py (CenterNet) or '
                              'dlaup2mmplug.py (ucbdrive DLA-Up)')
    source.require_keys(REQUIRED_KEYS, ARCH)
    converted, dropped = convert_dla_state_dict({k: source.take(k) for k in source.keys()})
    source.skipped.extend(dropped)
    return converted


def arch_state_dict(arch: str) -> Dict[str, torch.Tensor]:
    """``DLA(arch).state_dict()`` with shapes only (built on the meta device: no memory)."""
    with torch.device('meta'):
        return DLA(arch).state_dict()


def infer_arch(converted: Mapping[str, torch.Tensor], name: str) -> str:
    """The one DLA architecture whose keys and shapes ``converted`` has exactly."""
    matches: List[str] = [arch for arch in sorted(DLA_ARCHS)
                          if match_state_dict(converted, arch_state_dict(arch)).ok]
    if len(matches) != 1:
        found = 'none' if not matches else ', '.join(matches)
        raise UserFacingError(f'{name} fits {found} of the DLA architectures '
                              f'({", ".join(sorted(DLA_ARCHS))}): pass --arch to see which '
                              'keys differ')
    return matches[0]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official or timm checkpoint (.pth/.pth.tar/.safetensors)')
    parser.add_argument('dst', help='where to write the mmengine checkpoint')
    parser.add_argument('--arch', choices=sorted(DLA_ARCHS),
                        help='the DLA the checkpoint must fit strictly (default: the one '
                        'architecture it fits, found from its tensors)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target: Dict[str, Optional[str]] = {'arch': args.arch}
    meta = dict(converter='dla2mmplug')

    def convert(source: SourceState) -> Dict[str, torch.Tensor]:
        converted = convert_dla(source)
        if target['arch'] is None:
            target['arch'] = infer_arch(converted, source.name)
            print(f"arch: {target['arch']} (the only DLA these tensors fit)")
        else:
            print(f"arch: {target['arch']}")
        meta['arch'] = target['arch']  # read when the checkpoint is written
        return converted

    convert_checkpoint(args.src, args.dst, convert,
                       expected=lambda: arch_state_dict(target['arch']),
                       meta=meta,
                       target_name=args.arch)


if __name__ == '__main__':
    run_cli(main)
