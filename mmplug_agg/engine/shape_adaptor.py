"""Optimisation of shape adaptors' alphas (Liu et al., ECCV 2020) inside mmengine.

The official schedule (``alpha_schedule='alternate'``, the default): the alphas
have their own SGD (lr 0.1, momentum 0.9, Nesterov, no weight decay, cosine
over the run) that steps only every ``alpha_step`` iterations, from a forward
and backward of its own whose gradients are then dropped for the weights;
every iteration the weights step from a fresh forward with the updated
alphas. :class:`ShapeAdaptorOptimWrapperConstructor` builds a
:class:`ShapeAdaptorOptimWrapperDict` (``'model'`` and ``'alpha'``) for it, and
the shape-adaptor detector and segmentor run both passes in their
``train_step`` (:func:`alternating_train_step`; under DDP the
:class:`ShapeAdaptorDistributedDataParallel` wrapper does). Schedulers are
given per wrapper: ``param_scheduler = dict(model=[...], alpha=[cosine])``.

``alpha_schedule='joint'`` keeps the earlier form: one optimiser, the alphas
in their own parameter group, stepping with the weights every iteration.
:class:`ShapeAdaptorLoggerHook` logs the learned factors.
"""
import copy
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper, OptimWrapperDict
from mmengine.registry import (HOOKS, MODEL_WRAPPERS, OPTIM_WRAPPER_CONSTRUCTORS,
                               OPTIM_WRAPPERS, OPTIMIZERS)

from mmplug_agg.models.backbones.shape_adaptor import ShapeAdaptorChainMixin
from mmplug_agg.models.layers.shape_adaptor import ShapeAdaptor

ALPHA_SCHEDULES = ('alternate', 'joint')
DEFAULT_ALPHA_OPTIMIZER = dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)
ALPHA_CFG_KEYS = ('lr', 'momentum', 'nesterov', 'weight_decay', 'dampening')
# Optimiser-wrapper settings the alpha wrapper shares with the weights' (AMP);
# accumulation and clipping stay the weights' own.
SHARED_WRAPPER_KEYS = ('type', 'loss_scale', 'dtype', 'use_fsdp')


def alpha_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Every learnable shape adaptor's ``alpha`` in ``model`` (wrappers unwrapped)."""
    if is_model_wrapper(model):
        model = model.module
    return [m.alpha for m in model.modules() if isinstance(m, ShapeAdaptor) and m.learnable]


@OPTIM_WRAPPERS.register_module()
class ShapeAdaptorOptimWrapperDict(OptimWrapperDict):
    """``OptimWrapperDict`` of ``'model'`` and ``'alpha'`` plus the alpha interval.

    Args:
        alpha_step (int): The alphas step on iterations ``0, alpha_step, 2 *
            alpha_step, ...``.
        **optim_wrappers: ``model=`` (the weights') and ``alpha=`` wrappers.
    """

    def __init__(self, alpha_step: int = 1, **optim_wrappers: OptimWrapper) -> None:
        if set(optim_wrappers) != {'model', 'alpha'}:
            raise ValueError(f"ShapeAdaptorOptimWrapperDict needs exactly the wrappers "
                             f"('model', 'alpha'), got {sorted(optim_wrappers)}")
        super().__init__(**optim_wrappers)
        self.alpha_step = alpha_step
        self.iteration = 0

    def initialize_count_status(self, model: nn.Module, cur_iter: int, max_iters: int) -> None:
        # The weights' wrapper keeps its accumulation count; the iteration
        # counter resumes with the run, so alpha iterations stay on the grid.
        self['model'].initialize_count_status(model, cur_iter, max_iters)
        self.iteration = cur_iter

    def is_alpha_iteration(self) -> bool:
        return self.iteration % self.alpha_step == 0


def alternating_train_step(model: nn.Module, data, optim_wrapper: ShapeAdaptorOptimWrapperDict,
                           runner_module: Optional[nn.Module] = None) -> Dict[str, torch.Tensor]:
    """One iteration of the official schedule for an mmengine ``BaseModel``.

    On an alpha iteration a first forward/backward steps the alphas only and
    its gradients of the weights are dropped (the weights' accumulated
    gradients are set aside and put back, so gradient accumulation holds);
    then, every iteration, a fresh forward with the current alphas steps the
    weights (``update_params``: accumulation, clipping, AMP as configured),
    and that pass's alpha gradients are dropped.

    Args:
        model: The detector/segmentor (``data_preprocessor``, ``parse_losses``).
        data: A batch from the data loader.
        optim_wrapper: The ``'model'`` and ``'alpha'`` wrappers.
        runner_module: What runs the forward (the DDP wrapper under DDP,
            so gradients are synchronised). Defaults to ``model``.
    """
    runner_module = model if runner_module is None else runner_module
    weights, alphas = optim_wrapper['model'], optim_wrapper['alpha']
    with weights.optim_context(runner_module):
        data = model.data_preprocessor(data, True)
    if optim_wrapper.is_alpha_iteration():
        alpha_ids = {id(p) for group in alphas.param_groups for p in group['params']}
        kept = [(p, p.grad) for group in weights.param_groups for p in group['params']
                if id(p) not in alpha_ids]
        for param, _ in kept:
            param.grad = None
        with alphas.optim_context(runner_module):
            losses = runner_module._run_forward(data, mode='loss')
        alpha_loss, _ = model.parse_losses(losses)
        alphas.update_params(alpha_loss)
        for param, grad in kept:
            param.grad = grad
    with weights.optim_context(runner_module):
        losses = runner_module._run_forward(data, mode='loss')
    parsed_loss, log_vars = model.parse_losses(losses)
    weights.update_params(parsed_loss)
    alphas.zero_grad()
    optim_wrapper.iteration += 1
    return log_vars


class ShapeAdaptorTrainStepMixin:
    """``train_step`` that runs :func:`alternating_train_step` for a
    :class:`ShapeAdaptorOptimWrapperDict` and the model's own step otherwise."""

    def train_step(self, data, optim_wrapper):
        if isinstance(optim_wrapper, ShapeAdaptorOptimWrapperDict):
            return alternating_train_step(self, data, optim_wrapper)
        return super().train_step(data, optim_wrapper)


@MODEL_WRAPPERS.register_module()
class ShapeAdaptorDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` whose ``train_step`` runs the alternating schedule.

    Both passes run through DDP, and every parameter (alphas included) gets a
    gradient in each, so ``find_unused_parameters=False`` holds. Set it as
    ``model_wrapper_cfg = dict(type='ShapeAdaptorDistributedDataParallel')``.
    """

    def train_step(self, data, optim_wrapper):
        if isinstance(optim_wrapper, ShapeAdaptorOptimWrapperDict):
            return alternating_train_step(self.module, data, optim_wrapper, runner_module=self)
        return super().train_step(data, optim_wrapper)


def _check_alpha_optimizer(cfg: dict, who: str) -> None:
    if cfg.get('nesterov') and (cfg.get('momentum', 0) <= 0 or cfg.get('dampening', 0) != 0):
        raise ValueError(f'{who}: nesterov=True needs momentum > 0 and dampening 0, got {cfg}')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ShapeAdaptorOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimiser wrappers for a model with shape adaptors.

    Everything but the alphas is grouped as ``DefaultOptimWrapperConstructor``
    groups it (``paramwise_cfg`` applies). The alphas, per
    ``alpha_schedule``:

    * ``'alternate'`` (default, the official schedule): their own wrapper,
      built from ``alpha_optimizer`` (default ``dict(type='SGD', lr=0.1,
      momentum=0.9, nesterov=True, weight_decay=0.)``) with the weights'
      wrapper ``type`` (so ``--amp`` covers both; accumulation and clipping
      stay the weights'), returned as a :class:`ShapeAdaptorOptimWrapperDict`
      stepping every ``alpha_step`` iterations. Give the schedulers per wrapper:
      ``param_scheduler = dict(model=[...], alpha=[dict(type='CosineAnnealingLR',
      ...)])``.
    * ``'joint'``: one more parameter group of the weights' optimiser, with
      ``alpha_optimizer``'s settings (or ``paramwise_cfg['alpha_cfg']``, the
      earlier key); the weights' schedulers then scale it too.

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config, plus the keys
            ``alpha_schedule`` (str), ``alpha_step`` (int >= 1, default 20,
            the official CIFAR value; 1500 on ImageNet, 200 for AutoSC) and
            ``alpha_optimizer`` (dict).
        paramwise_cfg (dict, optional): As for the default constructor, plus
            ``alpha_cfg`` (dict, joint schedule only) with keys among ``lr``,
            ``momentum``, ``nesterov``, ``weight_decay``, ``dampening``.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='ShapeAdaptorOptimWrapperConstructor',
        ...     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
        ...     alpha_schedule='alternate', alpha_step=20,
        ...     alpha_optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True))
        >>> param_scheduler = dict(
        ...     model=[dict(type='PolyLR', power=0.9, by_epoch=False)],
        ...     alpha=[dict(type='CosineAnnealingLR', T_max=80000, by_epoch=False)])
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        optim_wrapper_cfg = copy.deepcopy(dict(optim_wrapper_cfg))
        self.alpha_schedule = optim_wrapper_cfg.pop('alpha_schedule', 'alternate')
        if self.alpha_schedule not in ALPHA_SCHEDULES:
            raise ValueError(f'optim_wrapper.alpha_schedule must be one of {ALPHA_SCHEDULES}, '
                             f'got {self.alpha_schedule!r}')
        self.alpha_step = optim_wrapper_cfg.pop('alpha_step', 20)
        if (isinstance(self.alpha_step, bool) or not isinstance(self.alpha_step, int)
                or self.alpha_step < 1):
            raise ValueError(f'optim_wrapper.alpha_step must be an int >= 1 (the alphas step '
                             f'every alpha_step iterations), got {self.alpha_step!r}')
        alpha_optimizer = dict(optim_wrapper_cfg.pop('alpha_optimizer', None)
                               or DEFAULT_ALPHA_OPTIMIZER)
        paramwise_cfg = dict(paramwise_cfg or {})
        alpha_cfg = dict(paramwise_cfg.pop('alpha_cfg', None) or {})
        unknown = set(alpha_cfg) - set(ALPHA_CFG_KEYS)
        if unknown:
            raise ValueError(f'paramwise_cfg.alpha_cfg keys must be among {ALPHA_CFG_KEYS}, '
                             f'got {sorted(unknown)}')
        if alpha_cfg and self.alpha_schedule != 'joint':
            raise ValueError("paramwise_cfg.alpha_cfg is for alpha_schedule='joint'; with "
                             "'alternate' give optim_wrapper.alpha_optimizer")
        if self.alpha_schedule == 'joint':
            group = {k: v for k, v in alpha_optimizer.items() if k in ALPHA_CFG_KEYS}
            self.alpha_cfg: Dict = {**{k: v for k, v in DEFAULT_ALPHA_OPTIMIZER.items()
                                       if k != 'type'}, **group, **alpha_cfg}
            _check_alpha_optimizer(self.alpha_cfg, 'paramwise_cfg.alpha_cfg')
        else:
            _check_alpha_optimizer(alpha_optimizer, 'optim_wrapper.alpha_optimizer')
        self.alpha_optimizer = alpha_optimizer
        self.alpha_wrapper_cfg = {k: optim_wrapper_cfg[k] for k in SHARED_WRAPPER_KEYS
                                  if k in optim_wrapper_cfg}
        super().__init__(optim_wrapper_cfg, paramwise_cfg or None)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        alphas = alpha_parameters(model)
        if not alphas:
            return optim_wrapper
        optimizer = optim_wrapper.optimizer
        alpha_ids = {id(p) for p in alphas}
        for group in optimizer.param_groups:
            group['params'] = [p for p in group['params'] if id(p) not in alpha_ids]
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g['params']]
        if self.alpha_schedule == 'joint':
            optimizer.add_param_group(dict(params=alphas, **self.alpha_cfg))
            return optim_wrapper
        alpha_optimizer = OPTIMIZERS.build(dict(self.alpha_optimizer, params=alphas))
        alpha_wrapper = OPTIM_WRAPPERS.build(
            dict(dict(type='OptimWrapper'), **self.alpha_wrapper_cfg, optimizer=alpha_optimizer))
        return ShapeAdaptorOptimWrapperDict(alpha_step=self.alpha_step, model=optim_wrapper,
                                            alpha=alpha_wrapper)


@HOOKS.register_module()
class ShapeAdaptorLoggerHook(Hook):
    """Log every shape adaptor's current factor as ``shape_factor_<k>`` while training.

    Adaptors of a shape-adaptor backbone come first, in order, from its cached
    host copy; any other adaptor follows. A backbone with a memory cap also
    logs the cap's last ``p`` as ``shape_cap_scale``.

    The values go through the message hub, so the logger prints them and the
    visualisation backends (``vis_data/scalars.json``) store them.

    Args:
        interval (int): Log every ``interval`` iterations. Defaults to 1.
    """

    priority = 'BELOW_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'interval must be a positive int, got {interval!r}')
        self.interval = interval

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        factors, chained = [], set()
        for module in model.modules():
            if isinstance(module, ShapeAdaptorChainMixin):
                # The backbone's cached read: no extra device sync.
                factors.extend(module.learned_factors())
                chained.update(id(a) for a in module.adaptors)
                if module.limit_dim is not None and module.last_plan is not None:
                    runner.message_hub.update_scalar('train/shape_cap_scale',
                                                     module.last_plan['scale'])
        factors.extend(m.factor() for m in model.modules()
                       if isinstance(m, ShapeAdaptor) and id(m) not in chained)
        for index, factor in enumerate(factors):
            runner.message_hub.update_scalar(f'train/shape_factor_{index}', factor)
