"""The official alternating alpha schedule inside mmengine (checked against a plain-PyTorch
loop written as the official code trains), accumulation, AMP, DDP, the per-wrapper
schedulers in a Runner, the joint option, the factor logger and bad settings."""
import copy
import math
import socket
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import HOOKS, init_default_scope
from mmengine.runner import Runner
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.engine import ShapeAdaptorLoggerHook
from mmplug_agg.engine.shape_adaptor import (ShapeAdaptorDistributedDataParallel,
                                             ShapeAdaptorOptimWrapperDict,
                                             ShapeAdaptorTrainStepMixin, alpha_parameters)
from mmplug_agg.models.backbones import ShapeAdaptorResNet

STEP = 2


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


class ToyModel(ShapeAdaptorTrainStepMixin, BaseModel):
    """A shape-adaptor ResNet and a 1x1 conv regressing two numbers per image."""

    def __init__(self):
        super().__init__()
        self.backbone = ShapeAdaptorResNet(depth=18, base_channels=4, stem_channels=4,
                                           norm_eval=False, init_cfg=None)
        self.head = nn.Conv2d(32, 2, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.head(self.backbone(inputs)[-1]).mean((2, 3))
        if mode == 'loss':
            return dict(loss=F.mse_loss(out, targets))
        return out


def toy_model(seed=0):
    torch.manual_seed(seed)
    return ToyModel()


def batches(count, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [dict(inputs=torch.rand(2, 3, 48, 56, generator=generator),
                 targets=torch.rand(2, 2, generator=generator)) for _ in range(count)]


def optim_cfg(**kwargs):
    cfg = dict(type='OptimWrapper', constructor='ShapeAdaptorOptimWrapperConstructor',
               optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4),
               alpha_step=STEP)
    cfg.update(kwargs)
    return cfg


def split(model):
    alphas = alpha_parameters(model)
    ids = {id(a) for a in alphas}
    return alphas, [p for p in model.parameters() if id(p) not in ids]


def official_loop(model, data, iterations, accumulate=1, leak=False):
    """The official training loop with plain torch optimisers; yields after each iteration.

    ``leak=True`` is the mistake the schedule must avoid: the weights also step on the
    gradients of the alpha pass.
    """
    alphas, weights = split(model)
    alpha_opt = torch.optim.SGD(alphas, lr=0.1, momentum=0.9, nesterov=True)
    weight_opt = torch.optim.SGD(weights, lr=0.05, momentum=0.9, weight_decay=5e-4)
    for i in range(iterations):
        batch = data[i]
        if i % STEP == 0:
            kept = [w.grad for w in weights]
            for w in weights:
                w.grad = None
            model(batch['inputs'], batch['targets'], mode='loss')['loss'].backward()
            alpha_opt.step()
            alpha_opt.zero_grad()
            if not leak:
                for w, g in zip(weights, kept):
                    w.grad = g
        loss = model(batch['inputs'], batch['targets'], mode='loss')['loss'] / accumulate
        loss.backward()
        if (i + 1) % accumulate == 0:
            weight_opt.step()
            weight_opt.zero_grad()
        alpha_opt.zero_grad()
        yield i


def snapshot(model):
    alphas, weights = split(model)
    return [a.detach().clone() for a in alphas], [w.detach().clone() for w in weights]


def test_alternating_schedule_matches_the_official_loop():
    model = toy_model()
    reference, leaky = copy.deepcopy(model), copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, optim_cfg())
    assert isinstance(wrapper, ShapeAdaptorOptimWrapperDict)
    assert (wrapper['alpha'].optimizer.defaults['lr'], wrapper['alpha'].optimizer.defaults[
        'nesterov']) == (0.1, True)
    data = batches(3 * STEP)
    ref_steps = official_loop(reference, data, 3 * STEP)
    leaky_steps = official_loop(leaky, data, 3 * STEP, leak=True)
    alpha_changes, leak_seen = [], False
    for i in range(3 * STEP):
        alphas_before, weights_before = snapshot(model)
        model.train_step(data[i], wrapper)
        next(ref_steps), next(leaky_steps)
        alphas_after, weights_after = snapshot(model)
        alpha_changes.append(any(not torch.equal(a, b)
                                 for a, b in zip(alphas_before, alphas_after)))
        # The weights change every iteration ...
        assert any(not torch.equal(a, b) for a, b in zip(weights_before, weights_after))
        # ... by the update the official loop computes after the alpha step.
        ref_alphas, ref_weights = snapshot(reference)
        for ours, ref in zip(alphas_after + weights_after, ref_alphas + ref_weights):
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        _, leaky_weights = snapshot(leaky)
        leak_seen |= any(not torch.allclose(a, b, rtol=1e-5, atol=1e-6)
                         for a, b in zip(weights_after, leaky_weights))
    # Alpha changes only on the alpha iterations 0, STEP, 2 * STEP.
    assert alpha_changes == [i % STEP == 0 for i in range(3 * STEP)]
    assert leak_seen  # the comparison would catch gradients leaking from the alpha pass


def test_gradient_accumulation_keeps_the_weights_gradients():
    model = toy_model()
    reference = copy.deepcopy(model)
    wrapper = build_optim_wrapper(model, optim_cfg(accumulative_counts=2))
    data = batches(3 * STEP)
    ref_steps = official_loop(reference, data, 3 * STEP, accumulate=2)
    weight_changes = []
    for i in range(3 * STEP):
        _, before = snapshot(model)
        model.train_step(data[i], wrapper)
        next(ref_steps)
        _, after = snapshot(model)
        weight_changes.append(any(not torch.equal(a, b) for a, b in zip(before, after)))
        for ours, ref in zip(sum(snapshot(model), []), sum(snapshot(reference), [])):
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert weight_changes == [i % 2 == 1 for i in range(3 * STEP)]


def test_amp_runs_both_passes_under_autocast():
    model = toy_model()
    wrapper = build_optim_wrapper(model, optim_cfg(type='CPUAmpOptimWrapper'))
    assert type(wrapper['alpha']).__name__ == type(wrapper['model']).__name__ == \
        'CPUAmpOptimWrapper'
    changes = []
    for i, batch in enumerate(batches(2 * STEP)):
        before, _ = snapshot(model)
        log_vars = model.train_step(batch, wrapper)
        assert torch.isfinite(log_vars['loss'])
        after, _ = snapshot(model)
        changes.append(any(not torch.equal(a, b) for a, b in zip(before, after)))
    assert changes == [i % STEP == 0 for i in range(2 * STEP)]


def test_joint_schedule_keeps_one_optimizer_with_an_alpha_group():
    model = toy_model()
    optimizer = build_optim_wrapper(model, optim_cfg(alpha_schedule='joint')).optimizer
    alphas = {id(p) for p in alpha_parameters(model)}
    assert len(alphas) == 6
    *others, alpha_group = optimizer.param_groups
    assert {id(p) for p in alpha_group['params']} == alphas
    assert (alpha_group['lr'], alpha_group['momentum'], alpha_group['nesterov'],
            alpha_group['weight_decay']) == (0.1, 0.9, True, 0.)
    assert sum(len(g['params']) for g in optimizer.param_groups) == len(
        list(model.parameters()))
    legacy = build_optim_wrapper(model, optim_cfg(
        alpha_schedule='joint', paramwise_cfg=dict(alpha_cfg=dict(lr=0.05), norm_decay_mult=0.)))
    assert isinstance(legacy, OptimWrapper) and legacy.optimizer.param_groups[-1]['lr'] == 0.05
    wrapper = build_optim_wrapper(model, optim_cfg(alpha_schedule='joint'))
    before = model.backbone.learned_factors()
    model.train_step(batches(1)[0], wrapper)  # the model's own step: alphas move at once
    assert model.backbone.learned_factors() != before


class LrRecorder(Hook):
    def __init__(self):
        self.lrs = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        lrs = runner.optim_wrapper.get_lr()
        self.lrs.append((lrs['model.lr'][0], lrs['alpha.lr'][0]))


def test_runner_steps_the_alpha_cosine_on_the_alpha_wrapper_only(tmp_path):
    data = [dict(inputs=b['inputs'][0], targets=b['targets'][0]) for b in batches(4)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, shuffle=False)
    recorder = LrRecorder()
    iters = 3 * STEP
    runner = Runner(
        model=toy_model(), work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=iters),
        optim_wrapper=optim_cfg(),
        param_scheduler=dict(
            model=[dict(type='MultiStepLR', milestones=[3], gamma=0.1, by_epoch=False)],
            alpha=[dict(type='CosineAnnealingLR', T_max=iters, by_epoch=False)]),
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[recorder], default_scope='mmdet')
    runner.train()
    model_lrs, alpha_lrs = zip(*recorder.lrs)
    assert model_lrs == pytest.approx([0.05] * 3 + [0.005] * 3)
    assert alpha_lrs == pytest.approx([0.05 * (1 + math.cos(math.pi * i / iters))
                                       for i in range(iters)])
    assert runner.optim_wrapper.iteration == iters


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_ddp_without_unused_parameters():
    """Both passes go through DDP; every parameter gets a gradient in each (else DDP fails
    at the next forward), and the result equals the single-process schedule."""
    torch.distributed.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{free_port()}',
                                         rank=0, world_size=1)
    try:
        model = toy_model()
        plain = copy.deepcopy(model)
        ddp = ShapeAdaptorDistributedDataParallel(module=model, find_unused_parameters=False)
        wrapper = build_optim_wrapper(ddp, optim_cfg())
        plain_wrapper = build_optim_wrapper(plain, optim_cfg())
        for batch in batches(2 * STEP):
            ddp.train_step(batch, wrapper)
            plain.train_step(batch, plain_wrapper)
        for ours, ref in zip(sum(snapshot(model), []), sum(snapshot(plain), [])):
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize('kwargs, match', [
    (dict(alpha_step=0), r'alpha_step must be an int >= 1'),
    (dict(alpha_step=2.5), r'alpha_step must be an int >= 1'),
    (dict(alpha_schedule='every'), r"alpha_schedule must be one of \('alternate', 'joint'\)"),
    (dict(alpha_optimizer=dict(type='SGD', lr=0.1, momentum=0., nesterov=True)),
     'nesterov=True needs momentum > 0'),
    (dict(paramwise_cfg=dict(alpha_cfg=dict(lr=0.1))), "alpha_cfg is for alpha_schedule='joint'"),
    (dict(alpha_schedule='joint', paramwise_cfg=dict(alpha_cfg=dict(betas=(0.9, 0.99)))),
     'alpha_cfg keys must be among'),
])
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_optim_wrapper(toy_model(), optim_cfg(**kwargs))


def test_logger_hook_reports_the_factors():
    assert HOOKS.get('ShapeAdaptorLoggerHook') is ShapeAdaptorLoggerHook
    model = toy_model()
    model.backbone.limit_dim = 1  # the 64 px input's final map is 2 px: capped
    with torch.no_grad():
        model.backbone.eval()(torch.rand(1, 3, 64, 64))
    hub = MessageHub.get_instance('test_shape_adaptor_logger')
    runner = SimpleNamespace(model=model, message_hub=hub, iter=1)
    ShapeAdaptorLoggerHook(interval=2).after_train_iter(runner, 0)
    factor = hub.get_scalar('train/shape_factor_3').current()
    assert factor == pytest.approx(model.backbone.learned_factors()[3])
    assert hub.get_scalar('train/shape_cap_scale').current() < 1
    with pytest.raises(ValueError, match='interval must be a positive int'):
        ShapeAdaptorLoggerHook(interval=0)
