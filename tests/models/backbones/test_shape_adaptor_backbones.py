"""ShapeAdaptorResNet / ShapeAdaptorDLA: sizes, nominal-stride outputs, gradients (DDP-safe),
the per-step size cache, independence of two models, the memory limit and bad configs."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import ShapeAdaptorDLA, ShapeAdaptorResNet
from mmplug_agg.models.layers.shape_adaptor import plan_sizes
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


TINY_RESNET = dict(depth=18, base_channels=4, stem_channels=4, norm_eval=False, init_cfg=None)
TINY_DLA = dict(channels=(4, 4, 8, 8, 16, 16), init_cfg=None)


def grads_everywhere(model, image):
    model.train()
    sum(out.mean() for out in model(image)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing


def test_resnet_initial_factors_reach_target_stride_and_sizes_follow_plan():
    model = ShapeAdaptorResNet(**TINY_RESNET).eval()
    factors = model.learned_factors()
    assert len(factors) == 4 and model.adaptor_positions == (2, 3, 5, 6)
    assert math.prod(factors) == pytest.approx(4 / 32)
    image = torch.rand(1, 3, 333, 517)
    with torch.no_grad():
        outs = model(image)
    base = (math.ceil(333 / 4), math.ceil(517 / 4))
    sizes = plan_sizes(factors, base, 'local')
    # Stage ends: blocks 1, 3, 5, 7; adaptors before blocks 2, 3, 5, 6.
    assert [o.shape[-2:] for o in outs] == [base, sizes[1], sizes[2], sizes[3]]


def test_resize_outputs_gives_nominal_strides_on_odd_inputs():
    model = MODEL_REGISTRIES['mmdet'].build(
        dict(type='ShapeAdaptorResNet', resize_outputs=True, alpha_init=1.5, **TINY_RESNET))
    with torch.no_grad():
        outs = model.eval()(torch.rand(1, 3, 333, 517))
    assert [tuple(o.shape[-2:]) for o in outs] == [
        (math.ceil(333 / s), math.ceil(517 / s)) for s in (4, 8, 16, 32)]


def test_global_and_local_rules():
    image = torch.rand(1, 3, 333, 517)
    shapes = {}
    for rule in ('local', 'global'):
        model = ShapeAdaptorResNet(size_rule=rule, num_adaptors=7, **TINY_RESNET).eval()
        with torch.no_grad():
            shapes[rule] = model(image)[-1].shape[-2:]
        base = (84, 130)
        assert shapes[rule] == plan_sizes(model.learned_factors(), base, rule)[-1]
    assert shapes['local'] != shapes['global']


@pytest.mark.parametrize('cls, cfg', [(ShapeAdaptorResNet, TINY_RESNET),
                                      (ShapeAdaptorDLA, TINY_DLA)])
def test_every_parameter_gets_a_gradient(cls, cfg):
    torch.manual_seed(0)
    grads_everywhere(cls(limit_dim=4, **cfg), torch.rand(2, 3, 61, 45))


def test_dla_sizes():
    model = ShapeAdaptorDLA(**TINY_DLA).eval()
    assert model.adaptor_positions == (1, 2, 3, 4, 5)
    assert math.prod(model.learned_factors()) == pytest.approx(1 / 16)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 133, 117))
    sizes = plan_sizes(model.learned_factors(), (133, 117), 'local')
    assert [o.shape[-2:] for o in outs] == list(sizes[1:])


def test_one_host_read_per_step_and_two_independent_models():
    first, second = ShapeAdaptorResNet(**TINY_RESNET), ShapeAdaptorResNet(**TINY_RESNET)
    image = torch.rand(1, 3, 64, 96)
    first(image)
    cached = first._factor_cache
    first(image)
    assert first._factor_cache is cached  # no new host read while alphas are unchanged
    optimizer = torch.optim.SGD([a.alpha for a in first.adaptors], lr=10.0)
    sum(o.mean() for o in first(image)).backward()
    optimizer.step()
    first(image)
    assert first._factor_cache is not cached
    assert first.learned_factors() != second.learned_factors()
    assert second.learned_factors() == pytest.approx([(1 / 8)**0.25] * 4)


def test_memory_limit_penalty():
    model = ShapeAdaptorResNet(limit_dim=4, limit_weight=2.0, **TINY_RESNET)
    assert float(model.penalty().detach()) == 0.0  # nothing seen yet
    model(torch.rand(1, 3, 256, 256))
    penalty = model.penalty()
    final = 64 * math.prod(model.learned_factors())
    assert float(penalty.detach()) == pytest.approx(2.0 * math.log(final / 4), rel=1e-5)
    penalty.backward()
    assert all(a.alpha.grad > 0 for a in model.adaptors)  # descent shrinks every factor
    assert float(ShapeAdaptorResNet(**TINY_RESNET).penalty().detach()) == 0.0


def test_segmentor_adds_the_penalty_to_its_losses():
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIG_DIR / 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py'))
    cfg.model.backbone.update(base_channels=8, stem_channels=8, limit_dim=2)
    cfg.model.decode_head.update(in_channels=64, channels=8)
    cfg.model.auxiliary_head.update(in_channels=32, channels=8)
    model = MODEL_REGISTRIES['mmseg'].build(cfg.model)
    batch = make_seg_batch(1, (64, 80), 5, seed=0)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    assert float(losses['loss_shape_limit'].detach()) > 0


def test_frozen_factors_keep_the_sizes():
    learned = ShapeAdaptorResNet(alpha_init=[0.3, -1.0, 2.0, 0.0], **TINY_RESNET).eval()
    frozen = ShapeAdaptorResNet(frozen_factors=learned.learned_factors(), **TINY_RESNET).eval()
    assert not any('alpha' in n for n, _ in frozen.named_parameters())
    image = torch.rand(1, 3, 97, 131)
    with torch.no_grad():
        assert ([o.shape for o in learned(image)] == [o.shape for o in frozen(image)])


@pytest.mark.parametrize('cls, kwargs, match', [
    (ShapeAdaptorResNet, dict(num_adaptors=8), r'num_adaptors must be in 1..7'),
    (ShapeAdaptorDLA, dict(target_stride=32), r'num_adaptors must be in 1..5'),
    (ShapeAdaptorResNet, dict(num_adaptors=3, target_stride=64), 'cannot reach target_stride'),
    (ShapeAdaptorResNet, dict(adaptor_positions=(3, 2)), 'adaptor_positions must be'),
    (ShapeAdaptorResNet, dict(adaptor_positions=(0, )), 'adaptor_positions must be'),
    (ShapeAdaptorResNet, dict(strides=(1, 2, 2, 2)), 'strides must stay 1'),
    (ShapeAdaptorDLA, dict(output_stride=8), 'takes no output_stride'),
    (ShapeAdaptorResNet, dict(r1=1.0), 'r1 must be smaller than r2'),
    (ShapeAdaptorResNet, dict(size_rule='ceil'), 'size_rule must be one of'),
    (ShapeAdaptorResNet, dict(limit_dim=0), 'limit_dim must be a positive int'),
    (ShapeAdaptorResNet, dict(target_stride=4), 'target_stride must be larger'),
])
def test_bad_configs(cls, kwargs, match):
    base = TINY_RESNET if cls is ShapeAdaptorResNet else TINY_DLA
    with pytest.raises(ValueError, match=match):
        cls(**base, **kwargs)


def test_input_too_small_fails_clearly():
    model = ShapeAdaptorResNet(num_adaptors=7, **TINY_RESNET)
    with pytest.raises(ValueError, match='too small.*num_adaptors'):
        model(torch.rand(1, 3, 16, 16))
