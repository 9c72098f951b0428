"""Convert mmseg's FCN-HRNet or mmdet's HRNet Faster R-CNN checkpoints to mmplug_agg configs.

* mmseg ``fcn_hr18`` / ``fcn_hr48`` (``FCNHead`` with ``input_transform='resize_concat'``,
  one 1x1 conv, no ``concat_input``) -> ``configs/hrnetv2_w{18,48}_*`` (``HRNetV2Head``).
* mmdet ``faster_rcnn_hrnetv2p_w32`` (``HRFPN``) -> ``configs/hrnetv2p_w32_faster_rcnn_1x_coco.py``
  (``HRNetV2pNeck``).

Our head and neck were written with the parameter names of mmseg's and mmdet's modules,
so every tensor keeps its name: the tool checks that the file has that layout, that it
fits the target config strictly (keys and shapes), logs the file's sha256 and writes an
mmengine checkpoint. HRFPN floors the size of its pooled levels (as the official
HRNet-Object-Detection code); our detection config sets ``HRNetV2pNeck(pooling_size=
'floor')`` to match, and the tool says so when a ``--config`` of yours does not. The
target is picked from the tensors' widths unless ``--config`` names one (e.g. a config
of yours with HRNet-W18 and ``HRNetV2pNeck``).

Example:
    python tools/model_converters/hrnet2mmplug.py \\
        fcn_hr18_512x1024_80k_cityscapes_20200601_223255-4e7b345e.pth hrnetv2_w18_mmplug.pth
    # then: load_from = 'hrnetv2_w18_mmplug.pth' in configs/hrnetv2_w18_cityscapes_512x1024_80k.py
"""
import argparse
from pathlib import Path
from typing import Dict, Optional

import torch

from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, expected_state_dict
from mmplug_agg.utils.launch import UserFacingError, run_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'
SEG_KEYS = ('backbone.stage4.0.branches.3.0.conv1.weight', 'decode_head.convs.0.conv.weight',
            'decode_head.conv_seg.weight')
DET_KEYS = ('backbone.stage4.0.branches.3.0.conv1.weight', 'neck.reduction_conv.conv.weight',
            'neck.fpn_convs.0.conv.weight')
# Width of the concatenated branches (sum of the four branch widths) -> our config.
SEG_CONFIGS = {270: 'hrnetv2_w18_cityscapes_512x1024_80k.py',
               720: 'hrnetv2_w48_cityscapes_512x1024_80k.py'}
DET_CONFIGS = {480: 'hrnetv2p_w32_faster_rcnn_1x_coco.py'}


def layout(source: SourceState) -> str:
    """'seg' (mmseg FCN-HRNet) or 'det' (mmdet HRFPN); another architecture fails."""
    if all(k in source for k in SEG_KEYS):
        if 'decode_head.conv_cat.conv.weight' in source:
            raise UserFacingError(f'{source.name} is an FCN-HRNet with concat_input=True; '
                                  'HRNetV2Head has no conv_cat (mmseg fcn_hr* configs set False)')
        return 'seg'
    if all(k in source for k in DET_KEYS):
        return 'det'
    raise UserFacingError(f'{source.name} is neither an mmseg FCN-HRNet (fcn_hr*) nor an mmdet '
                          'HRNet detector with HRFPN checkpoint: it has no '
                          f'{SEG_KEYS[1]} or {DET_KEYS[1]}')


def convert_hrnet(source: SourceState) -> Dict[str, torch.Tensor]:
    """Every tensor keeps its name (the layout is checked first)."""
    layout(source)
    return {key: source.take(key) for key in source.keys()}


def default_config(source: SourceState) -> str:
    kind = layout(source)
    if kind == 'seg':
        width, table = source.shape('decode_head.convs.0.conv.weight')[1], SEG_CONFIGS
    else:
        width, table = source.shape('neck.reduction_conv.conv.weight')[1], DET_CONFIGS
    if width not in table:
        raise UserFacingError(
            f'{source.name} has HRNet branches {width} channels wide in all; mmplug_agg has '
            f'configs for {sorted(table)} ({", ".join(table.values())}): pass --config '
            'with a config of that width')
    return str(CONFIG_DIR / table[width])


def neck_note(config: str) -> Optional[str]:
    """A warning when ``config``'s HRNetV2pNeck will not size its levels as HRFPN does."""
    from mmengine.config import Config
    neck = Config.fromfile(config).get('model', {}).get('neck') or {}
    if neck.get('type') == 'HRNetV2pNeck' and str(neck.get('pooling_size', 'ceil')).lower() \
            != 'floor':
        return ("note: the config's HRNetV2pNeck has pooling_size="
                f"{neck.get('pooling_size', 'ceil')!r}; mmdet's HRFPN floors, so predictions "
                "differ from mmdet's where the padded input's sides are not multiples of 64: "
                "set pooling_size='floor'")
    return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='mmseg fcn_hr* or mmdet faster_rcnn_hrnetv2p_* checkpoint')
    parser.add_argument('dst', help='where to write the mmengine checkpoint')
    parser.add_argument('--config', help='our config to check the result against (default: '
                        'picked from the width: hrnetv2_w18/w48 or hrnetv2p_w32)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    target = {}

    def convert(source: SourceState) -> Dict[str, torch.Tensor]:
        converted = convert_hrnet(source)
        target['config'] = args.config or default_config(source)
        print(f"target config: {target['config']}")
        if layout(source) == 'det':
            note = neck_note(target['config'])
            if note:
                print(note)
        return converted

    convert_checkpoint(args.src, args.dst, convert,
                       expected=lambda: expected_state_dict(target['config']),
                       meta=dict(converter='hrnet2mmplug'))


if __name__ == '__main__':
    run_cli(main)
