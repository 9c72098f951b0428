"""Optimisation of shape adaptors' alphas (Liu et al., ECCV 2020).

The paper trains the alphas with their own SGD (lr 0.1, momentum 0.9,
Nesterov, no weight decay) beside the network's optimiser.
:class:`ShapeAdaptorOptimWrapperConstructor` keeps one optimiser (so mmdet's
and mmseg's ``train_step`` and every ``param_scheduler`` work unchanged) and
gives the alphas their own parameter group with those settings.
:class:`ShapeAdaptorLoggerHook` logs the learned factors.
"""
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import HOOKS, OPTIM_WRAPPER_CONSTRUCTORS

from mmplug_agg.models.backbones.shape_adaptor import ShapeAdaptorChainMixin
from mmplug_agg.models.layers.shape_adaptor import ShapeAdaptor

DEFAULT_ALPHA_CFG = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)
ALPHA_CFG_KEYS = ('lr', 'momentum', 'nesterov', 'weight_decay', 'dampening')


def alpha_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Every learnable shape adaptor's ``alpha`` in ``model`` (wrappers unwrapped)."""
    if is_model_wrapper(model):
        model = model.module
    return [m.alpha for m in model.modules() if isinstance(m, ShapeAdaptor) and m.learnable]


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ShapeAdaptorOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """The default constructor, with every shape adaptor's ``alpha`` in its own group.

    Everything but the alphas is grouped as ``DefaultOptimWrapperConstructor``
    groups it (``paramwise_cfg`` applies); the alphas get one more group whose
    settings come from ``paramwise_cfg['alpha_cfg']`` over the defaults
    ``dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)``. Momentum
    and Nesterov act with an SGD optimiser (the paper's); other optimisers
    read only ``lr`` and ``weight_decay`` from the group.

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config.
        paramwise_cfg (dict, optional): As for the default constructor, plus
            ``alpha_cfg`` (dict) with keys among ``lr``, ``momentum``,
            ``nesterov``, ``weight_decay``, ``dampening``.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='ShapeAdaptorOptimWrapperConstructor',
        ...     optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=5e-4),
        ...     paramwise_cfg=dict(alpha_cfg=dict(lr=0.1)))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        alpha_cfg = dict(paramwise_cfg.pop('alpha_cfg', None) or {})
        unknown = set(alpha_cfg) - set(ALPHA_CFG_KEYS)
        if unknown:
            raise ValueError(f'paramwise_cfg.alpha_cfg keys must be among {ALPHA_CFG_KEYS}, '
                             f'got {sorted(unknown)}')
        self.alpha_cfg: Dict = {**DEFAULT_ALPHA_CFG, **alpha_cfg}
        if self.alpha_cfg['nesterov'] and (self.alpha_cfg['momentum'] <= 0
                                           or self.alpha_cfg.get('dampening', 0) != 0):
            raise ValueError('paramwise_cfg.alpha_cfg: nesterov=True needs momentum > 0 and '
                             f'dampening 0, got {self.alpha_cfg}')
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
        optimizer.add_param_group(dict(params=alphas, **self.alpha_cfg))
        return optim_wrapper


@HOOKS.register_module()
class ShapeAdaptorLoggerHook(Hook):
    """Log every shape adaptor's current factor as ``shape_factor_<k>`` while training.

    Adaptors of a shape-adaptor backbone come first, in order, from its cached
    host copy; any other adaptor follows.

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
        factors.extend(m.factor() for m in model.modules()
                       if isinstance(m, ShapeAdaptor) and id(m) not in chained)
        for index, factor in enumerate(factors):
            runner.message_hub.update_scalar(f'train/shape_factor_{index}', factor)
