"""Evaluate a checkpoint of a detector (mmdet config) or a segmentor (mmseg config).

Same arguments as mmdet 3.3's ``tools/test.py``; ``--show-dir`` writes the
predictions drawn on the images.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmplug_agg  # noqa: F401  (registers modules, fixes checkpoint loading)
from mmplug_agg.utils.launch import (UserFacingError, check_datasets, default_work_dir,
                                     load_config, prepare_launcher, run_cli,
                                     set_local_rank_env)

VISUALIZATION_HOOKS = {'mmdet': 'DetVisualizationHook', 'mmseg': 'SegVisualizationHook'}


def parse_args():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--show', action='store_true', help='show the predictions')
    parser.add_argument('--show-dir', help='write images with predictions drawn into this '
                        'folder, relative to work_dir/<timestamp>/')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds between shows')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. key=value or a.b=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation, when '
                        'the config defines tta_model and tta_pipeline')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    set_local_rank_env(args.local_rank)
    return args


def enable_visualization(cfg, args) -> None:
    hooks = cfg.setdefault('default_hooks', {})
    hook = hooks.get('visualization') or dict(type=VISUALIZATION_HOOKS[cfg.default_scope])
    hooks['visualization'] = hook
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:  # mmseg's hook writes through the visualiser's save_dir
            cfg.visualizer['save_dir'] = args.show_dir


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    prepare_launcher(cfg, args.launcher)
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or default_work_dir(args.config)
    if not osp.isfile(args.checkpoint):
        raise UserFacingError(f"checkpoint '{args.checkpoint}' does not exist")
    cfg.load_from = args.checkpoint

    if args.show or args.show_dir:
        enable_visualization(cfg, args)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise UserFacingError('--tta needs tta_model and tta_pipeline in the config')
        cfg.model = dict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserFacingError('--out must name a .pkl or .pickle file')
        dump_metric = dict(type='DumpResults', out_file_path=args.out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple))
                              else [evaluator]) + [dump_metric]

    check_datasets(cfg, ('test_dataloader',))
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.test()


if __name__ == '__main__':
    run_cli(main)
