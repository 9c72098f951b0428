"""The alphas' own parameter group (built through mmengine's registry) and the factor logger."""
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, init_default_scope
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.engine import ShapeAdaptorLoggerHook
from mmplug_agg.engine.shape_adaptor import alpha_parameters
from mmplug_agg.models.backbones import ShapeAdaptorResNet


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


def tiny_model() -> nn.Module:
    model = nn.Module()
    model.backbone = ShapeAdaptorResNet(depth=18, base_channels=4, stem_channels=4,
                                        norm_eval=False, init_cfg=None)
    model.head = nn.Conv2d(32, 2, 1)
    return model


def optim_cfg(**paramwise):
    return dict(type='OptimWrapper', constructor='ShapeAdaptorOptimWrapperConstructor',
                optimizer=dict(type='SGD', lr=0.01, momentum=0.5, weight_decay=5e-4),
                paramwise_cfg=paramwise or None)


def test_alphas_get_their_own_group():
    model = tiny_model()
    optimizer = build_optim_wrapper(model, optim_cfg()).optimizer
    alphas = {id(p) for p in alpha_parameters(model)}
    assert len(alphas) == 4
    *others, alpha_group = optimizer.param_groups
    assert {id(p) for p in alpha_group['params']} == alphas
    assert (alpha_group['lr'], alpha_group['momentum'], alpha_group['nesterov'],
            alpha_group['weight_decay']) == (0.1, 0.9, True, 0.)
    for group in others:
        assert not alphas & {id(p) for p in group['params']}
        assert (group['lr'], group['momentum'], group['weight_decay']) == (0.01, 0.5, 5e-4)
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(
        list(model.parameters()))


def test_alpha_cfg_overrides_and_paramwise_cfg_still_applies():
    model = tiny_model()
    optimizer = build_optim_wrapper(
        model, optim_cfg(alpha_cfg=dict(lr=0.05, nesterov=False), norm_decay_mult=0.)).optimizer
    alpha_group = optimizer.param_groups[-1]
    assert (alpha_group['lr'], alpha_group['nesterov']) == (0.05, False)
    norm_groups = [g for g in optimizer.param_groups[:-1] if g['weight_decay'] == 0]
    assert norm_groups  # the default constructor's paramwise rules still run


def test_bad_alpha_cfg():
    with pytest.raises(ValueError, match='alpha_cfg keys must be among'):
        build_optim_wrapper(tiny_model(), optim_cfg(alpha_cfg=dict(betas=(0.9, 0.99))))
    with pytest.raises(ValueError, match='nesterov=True needs momentum > 0'):
        build_optim_wrapper(tiny_model(), optim_cfg(alpha_cfg=dict(momentum=0.)))


def test_a_step_moves_the_alphas_and_the_planned_sizes():
    model = tiny_model()
    wrapper = build_optim_wrapper(model, optim_cfg(alpha_cfg=dict(lr=50.)))
    before = model.backbone.learned_factors()
    loss = model.head(model.backbone(torch.rand(2, 3, 96, 96))[-1]).square().mean()
    wrapper.update_params(loss)
    assert model.backbone.learned_factors() != before


def test_logger_hook_reports_the_factors():
    assert HOOKS.get('ShapeAdaptorLoggerHook') is ShapeAdaptorLoggerHook
    model = tiny_model()
    hub = MessageHub.get_instance('test_shape_adaptor_logger')
    runner = SimpleNamespace(model=model, message_hub=hub, iter=1)
    ShapeAdaptorLoggerHook(interval=2).after_train_iter(runner, 0)
    factor = hub.get_scalar('train/shape_factor_3').current()
    assert factor == pytest.approx(model.backbone.learned_factors()[3])
    with pytest.raises(ValueError, match='interval must be a positive int'):
        ShapeAdaptorLoggerHook(interval=0)
