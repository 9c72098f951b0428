"""Convert an effdet EfficientDet checkpoint to mmplug_agg's EfficientDet configs.

effdet (rwightman/efficientdet-pytorch, ``pip install effdet``) publishes the TensorFlow
EfficientDet checkpoints ported to PyTorch (``tf_efficientdet_d0`` .. ``d7x``) and its own
trainings (``efficientdet_d0``, ``efficientdet_d1``). The backbone goes into mmdet's
``EfficientNet``, the BiFPN into ours and the class/box nets into
``EfficientDetSepBNHead``; TensorFlow's redundant biases are folded into the following BN,
the prediction rows are reordered to mmdet's anchor and delta order, and a 90-class
checkpoint keeps the rows of mmdet's 80 COCO classes (see
``mmplug_agg/utils/effdet_conversion.py``). The result is checked against the config's
model (strict: no missing, unexpected or mis-shaped key) before it is written.

The config is picked from ``--arch`` (effdet's model name) unless ``--config`` names one.
The same conversion runs on load for ``load_from='effdet://tf_efficientdet_d0'`` (effdet
and one download needed).

Example:
    python tools/model_converters/effdet2mmplug.py tf_efficientdet_d0_34-f153e0cf.pth \\
        tf_efficientdet_d0_mmplug.pth --arch tf_efficientdet_d0
    # then: python tools/test.py configs/efficientdet_d0_bifpn_coco.py \\
    #           tf_efficientdet_d0_mmplug.pth
"""
import argparse
from pathlib import Path

from mmplug_agg.utils.conversion import SourceState, convert_checkpoint, expected_state_dict
from mmplug_agg.utils.effdet_conversion import (EFFDET_CONFIGS, aspects_of, convert_effdet,
                                                describe_effdet, describe_ours,
                                                is_tf_checkpoint)
from mmplug_agg.utils.launch import UserFacingError, load_config, run_cli

CONFIG_DIR = Path(__file__).resolve().parents[2] / 'configs'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='effdet checkpoint, e.g. tf_efficientdet_d0_34-f153e0cf.pth')
    parser.add_argument('dst', help='where to write the converted mmengine checkpoint')
    parser.add_argument('--arch', choices=sorted(EFFDET_CONFIGS),
                        help='effdet model name of the checkpoint; picks our config')
    parser.add_argument('--config', help='our config to convert for (default: from --arch)')
    return parser.parse_args()


def check_padding(cfg, tf_checkpoint: bool, config: str) -> None:
    """TensorFlow ports need SAME padding, effdet's own trainings symmetric padding."""
    conv_cfg = cfg.model.backbone.get('conv_cfg', dict(type='Conv2dAdaptivePadding'))
    same_convs = bool(conv_cfg) and conv_cfg.get('type') == 'Conv2dAdaptivePadding'
    same_pools = cfg.model.neck.get('pool_padding', 'symmetric') == 'same'
    if tf_checkpoint and not (same_convs and same_pools):
        raise UserFacingError(f'the checkpoint is a TensorFlow port (tf_efficientdet_*), which '
                              f'needs SAME padding, but {config} pads symmetrically; use '
                              'configs/efficientdet_d*_bifpn_coco.py')
    if not tf_checkpoint and (same_convs or same_pools):
        raise UserFacingError(f'the checkpoint is one of effdet\'s own trainings '
                              f'(efficientdet_d*), which pad symmetrically, but {config} uses '
                              'SAME padding; use configs/efficientdet_d*_bifpn_coco_effdet.py')


def main() -> None:
    args = parse_args()
    if args.config is None and args.arch is None:
        raise UserFacingError('give --arch (the effdet model name, e.g. tf_efficientdet_d0) or '
                              '--config')
    if not Path(args.src).is_file():
        raise UserFacingError(f"checkpoint '{args.src}' does not exist")
    config = args.config or str(CONFIG_DIR / f'{EFFDET_CONFIGS[args.arch]}.py')
    cfg = load_config(config)
    head = cfg.model.bbox_head
    if head.get('type') != 'EfficientDetSepBNHead':
        raise UserFacingError(f'{config} is not an EfficientDet config (its head is '
                              f'{head.get("type")}, not EfficientDetSepBNHead)')
    expected = {}

    def convert(source: SourceState):
        source.require_keys(['backbone.conv_stem.weight', 'box_net.predict.conv_pw.weight'],
                            'effdet EfficientDet')
        check_padding(cfg, is_tf_checkpoint(source), config)
        expected.update(expected_state_dict(config))
        theirs, ours = describe_effdet(source), describe_ours(expected)
        print(f'checkpoint: {theirs}')
        print(f'config:     {ours}')
        if theirs.rsplit(',', 1)[0] != ours.rsplit(',', 1)[0]:
            raise UserFacingError(f'the checkpoint ({theirs}) is not the architecture of '
                                  f'{config} ({ours}); nothing written')
        return convert_effdet(source, num_classes=head.num_classes,
                              aspects=aspects_of(head.anchor_generator),
                              num_scales=head.anchor_generator.scales_per_octave)

    convert_checkpoint(args.src, args.dst, convert, expected=lambda: expected,
                       meta=dict(effdet_arch=args.arch, config=Path(config).name))


if __name__ == '__main__':
    run_cli(main)
