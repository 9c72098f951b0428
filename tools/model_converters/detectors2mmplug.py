"""Convert an mmdet DetectoRS / RFP checkpoint to mmplug_agg's RecursiveFeaturePyramid configs.

mmdet's layout: ``backbone.*`` is the first pass's ``DetectoRS_ResNet``; the ``RFP``
neck holds the FPN (``neck.lateral_convs``, ``neck.fpn_convs``), one backbone per later
pass (``neck.rfp_modules.<c>``, whose first blocks of stages 2-4 carry the feedback
``rfp_conv``), the shared ASPP (``neck.rfp_aspp``) and the fusion gate
(``neck.rfp_weight``). Our wrapper is the detector's backbone (the detector has no neck):
``backbone.backbone``, ``backbone.neck``, ``backbone.rfp_backbones.<c>``,
``backbone.feedback_convs.<c>.<k>``, ``backbone.aspp``, ``backbone.gate``. The RPN and RoI
heads keep their names. Nothing is dropped and nothing is re-computed: every tensor is
moved once.

The target config is picked from the checkpoint (SAC keys: DetectoRS Cascade, otherwise
RFP Cascade) unless ``--config`` names one; HTC checkpoints have no config here yet.

Example:
    python tools/model_converters/detectors2mmplug.py \\
        detectors_cascade_rcnn_r50_1x_coco-32a10ba0.pth detectors_cascade_mmplug.pth
    # then: python tools/test.py configs/detectors_cascade_rcnn_r50.py \\
    #           detectors_cascade_mmplug.pth   (or load_from='detectors_cascade_mmplug.pth')
"""
import argparse
import re
from pathlib import Path
from typing import Dict, List

import torch

from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, expected_state_dict
from mmplug_agg.utils.launch import UserFacingError, run_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
ARCH = 'mmdet DetectoRS/RFP (DetectoRS_ResNet + RFP)'
RFP_CONV = re.compile(r'neck\.rfp_modules\.(\d+)\.layer(\d+)\.0\.rfp_conv\.(weight|bias)')


def fed_stages(source: SourceState) -> List[int]:
    """Backbone stages (0-based) that take feedback, from the ``rfp_conv`` keys."""
    return sorted({int(m[2]) - 1 for m in map(RFP_CONV.fullmatch, source.keys()) if m})


def convert_detectors(source: SourceState) -> Dict[str, torch.Tensor]:
    """mmdet DetectoRS_ResNet + RFP keys -> RecursiveFeaturePyramid-as-backbone keys."""
    source.require_keys(['backbone.conv1.weight', 'neck.rfp_aspp.aspp.0.weight',
                         'neck.rfp_weight.weight', 'neck.rfp_modules.0.conv1.weight'], ARCH)
    if any(k.startswith(('roi_head.mask_head', 'roi_head.semantic_head')) for k in source.keys()):
        raise UserFacingError(f'{source.name} is an HTC checkpoint; mmplug_agg has Cascade '
                              'R-CNN RFP configs only (rfp_cascade_rcnn_r50, '
                              'detectors_cascade_rcnn_r50)')
    stages = fed_stages(source)
    converted = {}
    for key in source.keys():
        match = RFP_CONV.fullmatch(key)
        if match:
            position = stages.index(int(match[2]) - 1)
            ours = f'backbone.feedback_convs.{match[1]}.{position}.{match[3]}'
        elif key.startswith('backbone.'):
            ours = 'backbone.' + key
        elif key.startswith(('neck.lateral_convs.', 'neck.fpn_convs.')):
            ours = 'backbone.' + key
        elif key.startswith('neck.rfp_modules.'):
            ours = 'backbone.rfp_backbones.' + key[len('neck.rfp_modules.'):]
        elif key.startswith('neck.rfp_aspp.'):
            ours = 'backbone.aspp.' + key[len('neck.rfp_aspp.'):]
        elif key.startswith('neck.rfp_weight.'):
            ours = 'backbone.gate.' + key[len('neck.rfp_weight.'):]
        elif key.startswith(('rpn_head.', 'roi_head.')):
            ours = key
        else:
            continue  # reported as unmapped
        converted[ours] = source.take(key)
    return converted


def default_config(source: SourceState) -> str:
    sac = any(k.endswith('.switch.weight') for k in source.keys())
    name = 'detectors_cascade_rcnn_r50.py' if sac else 'rfp_cascade_rcnn_r50.py'
    return str(CONFIG_DIR / name)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src',
                        help='mmdet checkpoint, e.g. cascade_rcnn_r50_rfp_1x_coco-8cf51bfd.pth')
    parser.add_argument('dst', help='where to write the mmengine checkpoint')
    parser.add_argument('--config', help='our config to check the result against (default: '
                        'configs/detectors_cascade_rcnn_r50.py for SAC checkpoints, else '
                        'configs/rfp_cascade_rcnn_r50.py)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target = {}

    def convert(source: SourceState) -> Dict[str, torch.Tensor]:
        converted = convert_detectors(source)
        target['config'] = args.config or default_config(source)
        print(f"target config: {target['config']}")
        return converted

    convert_checkpoint(args.src, args.dst, convert,
                       expected=lambda: expected_state_dict(target['config']),
                       meta=dict(converter='detectors2mmplug'))


if __name__ == '__main__':
    run_cli(main)
