"""Convert an official (ucbdrive/dla) or timm DLA checkpoint to mmplug_agg's DLA keys.

The classifier and the projections that the official code computes and
discards in deep trees are dropped; the stem, conv levels and projections are
renamed to mmcv ``ConvModule`` names. With ``--arch`` the result is loaded
into ``DLA(arch)`` and the missing/unexpected keys are reported (the tool fails
if there are any).

Example:
    python tools/model_converters/dla2mmplug.py dla34-ba72cf86.pth dla34_mmplug.pth --arch dla34
    # then in a config:
    # backbone=dict(type='DLA', arch='dla34',
    #               init_cfg=dict(type='Pretrained', checkpoint='dla34_mmplug.pth'))
"""
import argparse
import os.path as osp
from typing import Dict

import torch

from mmplug_agg.models.backbones import DLA, DLA_ARCHS, convert_dla_state_dict
from mmplug_agg.utils.launch import UserFacingError, run_cli


def load_source(path: str) -> Dict[str, torch.Tensor]:
    if not osp.isfile(path):
        raise UserFacingError(f"checkpoint '{path}' does not exist")
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file  # timm's Hugging Face hub format
        return load_file(path)
    # Official and timm checkpoints are plain tensor dicts: no pickled objects needed.
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise UserFacingError(f"'{path}' holds no state dict")
    return checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official or timm checkpoint (.pth/.pth.tar/.safetensors)')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--arch', choices=sorted(DLA_ARCHS),
                        help='check the result loads strictly into DLA(arch)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    converted, dropped = convert_dla_state_dict(load_source(args.src))
    print(f'converted {len(converted)} tensors; dropped {len(dropped)}: '
          f'{", ".join(dropped) if dropped else "none"}')
    if args.arch:
        expected = DLA(args.arch).state_dict()
        # Checkpoints from before torch 0.4.1 have no BN counters; loading creates them.
        missing = [k for k in expected
                   if k not in converted and not k.endswith('num_batches_tracked')]
        unexpected = [k for k in converted if k not in expected]
        mismatched = [f'{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}'
                      for k, v in converted.items() if k in expected and v.shape != expected[k].shape]
        print(f'missing keys: {", ".join(missing) or "none"}')
        print(f'unexpected keys: {", ".join(unexpected) or "none"}')
        print(f'shape mismatches (checkpoint vs {args.arch}): {", ".join(mismatched) or "none"}')
        if missing or unexpected or mismatched:
            raise UserFacingError(f'the checkpoint does not match {args.arch}; nothing written')
    torch.save({'state_dict': converted, 'meta': {'converted_from': osp.basename(args.src)}},
               args.dst)
    print(f'wrote {args.dst}')


if __name__ == '__main__':
    run_cli(main)
