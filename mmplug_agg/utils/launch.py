"""What ``tools/train.py`` and ``tools/test.py`` share, for mmdet and mmseg configs alike.

* One-line errors: a wrong config, an unknown type or a missing data set ends with
  ``error: <what is wrong and what to do>`` and exit code 1, before the runner
  writes anything into the work dir; so does a backbone whose widths do not fit
  the neck's ``in_channels`` (found when the model is built or at its first forward).
* CPU distributed runs: mmengine 0.10's ``init_dist`` pins a CUDA device and its DDP
  wrapper passes ``device_ids``; both fail without a GPU. On a CPU-only host we
  start the gloo process group ourselves and wrap the model without device ids, so
  ``--launcher pytorch`` works on any machine.
"""
import os
import os.path as osp
import sys
from typing import Callable, Iterable, Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config

TOOLBOX_SCOPES = ('mmdet', 'mmseg')


class UserFacingError(RuntimeError):
    """A mistake the user can fix; reported as one line, without a traceback."""


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    if not osp.isfile(path):
        raise UserFacingError(f"config file '{path}' does not exist")
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TOOLBOX_SCOPES:
        raise UserFacingError(
            f"config '{path}' has default_scope={scope!r}; expected one of {TOOLBOX_SCOPES} "
            "(inherit an mmdet:: or mmseg:: base config)")
    return cfg


def build_model(cfg: Config, device: str = 'cpu') -> Tuple[torch.nn.Module, str]:
    """Build ``cfg.model`` under the config's toolbox scope, for one-process analysis.

    SyncBN layers become BatchNorm: SyncBN needs a process group, which a
    single-process tool does not have, and both compute and count the same.

    Returns:
        The model on ``device`` and its toolbox ('mmdet' or 'mmseg').

    Raises:
        KeyError: A type in ``cfg.model`` is in no registry of the scope.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope

    toolbox = cfg.get('default_scope', 'mmdet')
    init_default_scope(toolbox)
    return revert_sync_batchnorm(MODELS.build(cfg.model)).to(device), toolbox


def default_work_dir(config_path: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def _dataset_cfgs(dataset_cfg) -> Iterable:
    """Yield leaf dataset configs (wrappers such as ConcatDataset hold several)."""
    if dataset_cfg is None:
        return
    children = dataset_cfg.get('datasets') or ([dataset_cfg['dataset']]
                                               if 'dataset' in dataset_cfg else [])
    if children:
        for child in children:
            yield from _dataset_cfgs(child)
    else:
        yield dataset_cfg


def check_datasets(cfg: Config, dataloader_keys: Iterable[str]) -> None:
    """Fail early, naming the folder and the fix, when a data set is not on disk."""
    datasets = [(key, dataset) for key in dataloader_keys if cfg.get(key)
                for dataset in _dataset_cfgs(cfg[key].get('dataset'))]
    demo_root = cfg.get('demo_data_root')
    if demo_root and any(osp.normpath(dataset.get('data_root') or '') == osp.normpath(demo_root)
                         for _, dataset in datasets):
        from mmplug_agg.datasets import check_demo_data
        try:
            check_demo_data(demo_root)
        except (FileNotFoundError, RuntimeError) as err:
            raise UserFacingError(str(err)) from None
    for key, dataset in datasets:
        data_root = dataset.get('data_root') or ''
        if data_root and not osp.isdir(data_root):
            raise UserFacingError(
                f"{key}: data_root '{data_root}' does not exist; put the data set there or set "
                f'it with --cfg-options {key}.dataset.data_root=PATH')
        ann_file = dataset.get('ann_file') or ''
        if ann_file:
            ann_path = ann_file if osp.isabs(ann_file) else osp.join(data_root, ann_file)
            if not osp.isfile(ann_path):
                raise UserFacingError(f"{key}: annotation file '{ann_path}' does not exist")


def set_local_rank_env(local_rank: int) -> None:
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK itself.
    os.environ.setdefault('LOCAL_RANK', str(local_rank))


def prepare_launcher(cfg: Config, launcher: str) -> None:
    """Set ``cfg.launcher``; on CPU-only hosts, start gloo and wrap DDP without devices."""
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise UserFacingError(
            f"--launcher {launcher} needs GPUs; on a CPU-only host use --launcher pytorch "
            "(torchrun) or --launcher none")
    backend = 'gloo'
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = backend
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel',
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend=backend)


def enable_amp(cfg: Config) -> None:
    """``--amp``: float16 + dynamic loss scaling on CUDA, bfloat16 autocast on a CPU.

    mmengine's ``AmpOptimWrapper`` refuses to start without a GPU, so CPU runs use
    :class:`mmplug_agg.engine.CPUAmpOptimWrapper` (bfloat16 needs no loss scaling).
    """
    wrapper = cfg.optim_wrapper
    kind = wrapper.get('type', 'OptimWrapper')
    if torch.cuda.is_available():
        if kind == 'AmpOptimWrapper':
            print('AMP is already enabled in the config')
            return
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
        return
    if kind == 'CPUAmpOptimWrapper':
        print('AMP is already enabled in the config')
        return
    wrapper.type = 'CPUAmpOptimWrapper'
    wrapper.pop('loss_scale', None)
    wrapper.dtype = 'bfloat16'
    print('AMP on CPU: bfloat16 autocast (CPUAmpOptimWrapper), no loss scaling')


def _registry_miss(err: KeyError) -> Optional[str]:
    message = str(err.args[0]) if err.args else ''
    if 'is not in the' in message and 'registry' in message:
        first_sentence = message.split('. ')[0]
        return (f'{first_sentence}. Check the type name, and that the config has '
                "custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)")
    return None


def _close_process_group() -> None:
    """Destroy the default process group, if any, before the interpreter exits.

    Left to the interpreter's shutdown, gloo's worker threads can abort a finished
    run ("terminate called without an active exception", SIGABRT): torchrun then
    reports a failure after a complete training.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_cli(main: Callable[[], None]) -> None:
    """Run a tool's ``main`` and turn user mistakes into one line on stderr, exit 1."""
    from mmplug_agg.models.layers.channel_check import ChannelMismatchError
    try:
        main()
        # After a complete run only: on an error the other ranks may still be in a
        # collective that a destroy would wait for.
        _close_process_group()
    except (UserFacingError, ChannelMismatchError) as err:
        print(f'error: {err}', file=sys.stderr)
        sys.exit(1)
    except KeyError as err:
        message = _registry_miss(err)
        if message is None:
            raise
        print(f'error: {message}', file=sys.stderr)
        sys.exit(1)
