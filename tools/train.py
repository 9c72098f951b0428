"""Train a detector (mmdet config) or a segmentor (mmseg config).

Same arguments as mmdet 3.3's ``tools/train.py``; the config's ``default_scope``
picks the toolbox. Works with ``--launcher pytorch`` on GPUs and on CPU-only hosts.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmplug_agg  # noqa: F401  (registers modules, fixes checkpoint loading)
from mmplug_agg.utils.launch import (UserFacingError, check_datasets, default_work_dir,
                                     enable_amp, load_config, prepare_launcher, run_cli,
                                     set_local_rank_env)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a detector or a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training (float16 on CUDA, '
                        'bfloat16 on CPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                        'work dir when no path is given')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. key=value or a.b=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    set_local_rank_env(args.local_rank)
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    prepare_launcher(cfg, args.launcher)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)

    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        scale_cfg = cfg.get('auto_scale_lr')
        if not scale_cfg or 'base_batch_size' not in scale_cfg:
            raise UserFacingError('--auto-scale-lr needs auto_scale_lr = dict(base_batch_size=N) '
                                  'in the config')
        scale_cfg.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise UserFacingError(f"--resume: checkpoint '{args.resume}' does not exist")
        cfg.resume, cfg.load_from = True, args.resume

    check_datasets(cfg, ('train_dataloader', 'val_dataloader'))
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    run_cli(main)
