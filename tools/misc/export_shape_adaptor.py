"""Freeze the shape a Shape Adaptor model learned into a plain config.

Reads a training config whose backbone is ``ShapeAdaptorResNet`` or
``ShapeAdaptorDLA`` (any ``adaptor_type`` and ``mode``) and a checkpoint of it,
and writes a config in which every adaptor has its learned factor fixed
(``frozen_factors``): no alphas, no alpha optimiser, no host read of alphas;
each adaptor mixes its branches with the constant weight of its factor, so
with the checkpoint's weights (``--load-from``) the frozen model computes what
the trained one did, at fixed sizes for a given input (it exports to ONNX).
A hard ``limit_dim`` stays (it is part of the forward pass); the soft
penalty (``limit_type='loss'``) and the alternating schedule are dropped.

Example::

    python tools/misc/export_shape_adaptor.py \\
        configs/shape_adaptor_r50_fcn_cityscapes_512x1024_80k.py work_dirs/x/iter_80000.pth \\
        --out configs/my_found_shape.py
"""
import argparse
import os.path as osp
import re
from typing import List, Tuple

from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader

import mmplug_agg  # noqa: F401  (registers the backbones, fixes checkpoint loading)
from mmplug_agg.models.layers.shape_adaptor import factor_from_alpha
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.utils.launch import UserFacingError, load_config, run_cli

BACKBONES = ('ShapeAdaptorResNet', 'ShapeAdaptorDLA')
ALPHA_KEY = re.compile(r'^(?:module\.)?backbone\.adaptors\.(\d+)\.alpha$')
# Arguments that only matter while the shape is being learned.
LEARNING_ONLY = ('alpha_init', 'limit_weight')
# Modes whose adaptor positions a config may give (AutoTL's are fixed).
POSITIONED_MODES = ('standard', 'autosc')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Write a config with the shape a Shape Adaptor checkpoint learned, frozen.')
    parser.add_argument('config', help='the training config (ShapeAdaptorResNet/DLA backbone)')
    parser.add_argument('checkpoint', help='a checkpoint trained with that config')
    parser.add_argument('--out', required=True, help='where to write the exported config (.py)')
    parser.add_argument('--load-from', action='store_true',
                        help="set the exported config's load_from to the checkpoint (fine-tune "
                        'the searched weights instead of retraining from scratch)')
    return parser.parse_args()


def read_alphas(checkpoint: str) -> List[float]:
    if not osp.isfile(checkpoint):
        raise UserFacingError(f"checkpoint '{checkpoint}' does not exist")
    ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
    found = {}
    for key, value in state_dict.items():
        match = ALPHA_KEY.match(key)
        if match:
            found[int(match[1])] = float(value)
    if not found:
        raise UserFacingError(f"checkpoint '{checkpoint}' holds no backbone.adaptors.<k>.alpha: "
                              'it was not trained with a learnable shape adaptor backbone')
    if sorted(found) != list(range(len(found))):
        raise UserFacingError(f"checkpoint '{checkpoint}' has alphas of adaptors "
                              f'{sorted(found)}, expected 0..{len(found) - 1}')
    return [found[k] for k in range(len(found))]


def export(cfg: Config, alphas: List[float]) -> Tuple[Config, Tuple[float, ...]]:
    """``cfg`` with its backbone's adaptors frozen at the factors of ``alphas``."""
    backbone_cfg = cfg.model.get('backbone')
    if backbone_cfg is None or backbone_cfg.get('type') not in BACKBONES:
        found = None if backbone_cfg is None else backbone_cfg.get('type')
        raise UserFacingError(f'model.backbone.type must be one of {BACKBONES}, got {found!r}')
    if backbone_cfg.get('frozen_factors') is not None:
        raise UserFacingError('model.backbone already has frozen_factors: nothing to export')
    # Only the adaptors' count and positions are needed: skip the weight download.
    build_cfg = dict(backbone_cfg, init_cfg=None)
    init_default_scope(cfg.default_scope)
    backbone = MODEL_REGISTRIES[cfg.default_scope].build(build_cfg)
    if len(backbone.adaptors) != len(alphas):
        raise UserFacingError(f'the config builds {len(backbone.adaptors)} adaptors but the '
                              f'checkpoint has {len(alphas)} alphas: config and checkpoint do '
                              'not match')
    factors = tuple(factor_from_alpha(a, backbone.r1, backbone.r2) for a in alphas)
    frozen = cfg.copy()
    for key in LEARNING_ONLY:
        frozen.model.backbone.pop(key, None)
    if backbone.limit_type == 'loss':
        for key in ('limit_dim', 'limit_type'):
            frozen.model.backbone.pop(key, None)
    frozen.model.backbone.frozen_factors = [float(f) for f in factors]
    if backbone.mode in POSITIONED_MODES:
        frozen.model.backbone.adaptor_positions = list(backbone.adaptor_positions)
        frozen.model.backbone.num_adaptors = len(factors)
    optim_wrapper = frozen.get('optim_wrapper')
    if optim_wrapper is not None:
        # Nothing is left for the alpha optimiser: one wrapper, the weights' schedule.
        for key in ('constructor', 'alpha_schedule', 'alpha_step', 'alpha_optimizer'):
            optim_wrapper.pop(key, None)
    scheduler = frozen.get('param_scheduler')
    if isinstance(scheduler, dict) and 'type' not in scheduler and 'model' in scheduler:
        frozen.param_scheduler = scheduler['model']
    if frozen.get('model_wrapper_cfg', {}).get('type') == 'ShapeAdaptorDistributedDataParallel':
        frozen.model_wrapper_cfg = dict(type='MMDistributedDataParallel',
                                        find_unused_parameters=False)
    return frozen, factors


def main() -> None:
    args = parse_args()
    if not args.out.endswith('.py'):
        raise UserFacingError(f"--out must name a .py config file, got '{args.out}'")
    cfg = load_config(args.config)
    alphas = read_alphas(args.checkpoint)
    frozen, factors = export(cfg, alphas)
    if args.load_from:
        frozen.load_from = osp.abspath(args.checkpoint)
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise UserFacingError(f"--out: folder '{out_dir}' does not exist")
    frozen.dump(args.out)
    product = 1.0
    for factor in factors:
        product *= factor
    print(f'frozen factors {[round(f, 4) for f in factors]} (product {product:.4f}) at units '
          f'{list(frozen.model.backbone.adaptor_positions)}; config written to {args.out}')


if __name__ == '__main__':
    run_cli(main)
