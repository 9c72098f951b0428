"""ShapeAdaptor: the learned factor sets the size, alpha gets gradients, size rules, the hard
cap's rescaling, frozen adaptors, bad args."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.layers import ShapeAdaptor
from mmplug_agg.models.layers.shape_adaptor import (alpha_from_factor, cap_scale,
                                                    factor_from_alpha, plan_chain, plan_sizes)
from mmplug_agg.registry import MODEL_REGISTRIES


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


@pytest.mark.parametrize('alpha', [-3.0, 0.0, 2.5])
def test_output_size_follows_factor_on_odd_rectangles(alpha):
    adaptor = ShapeAdaptor(r1=0.5, r2=1.0, alpha_init=alpha)
    factor = 0.5 + 0.5 / (1 + math.exp(-alpha))
    assert adaptor.factor() == pytest.approx(factor)
    out = adaptor(torch.rand(1, 3, 333, 517))
    assert out.shape[-2:] == (math.floor(333 * factor), math.floor(517 * factor))


def test_mix_is_the_papers_equation_with_align_corners():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 21, 34)
    adaptor = ShapeAdaptor(alpha_init=0.4)
    sigma = torch.sigmoid(torch.tensor(0.4))
    size = adaptor.output_size(x.shape[-2:])

    def resize(t):
        return F.interpolate(t, size=size, mode='bilinear', align_corners=True)

    expected = (1 - sigma) * resize(F.max_pool2d(x, 2, 2, ceil_mode=True)) + sigma * resize(x)
    torch.testing.assert_close(adaptor(x), expected)
    residual = ShapeAdaptor(alpha_init=0.4, residual=True)
    torch.testing.assert_close(residual(x), 2 * expected)


def test_explicit_size_and_global_rule():
    adaptor = ShapeAdaptor(alpha_init=0.0, size_rule='global')
    assert adaptor.output_size((333, 517)) == (round(333 * 0.75), round(517 * 0.75))
    assert adaptor(torch.rand(1, 2, 33, 51), out_size=(7, 40)).shape[-2:] == (7, 40)


def test_local_and_global_rules_differ_along_a_chain():
    factors = [0.7, 0.7, 0.7]
    local = plan_sizes(factors, (333, 517), 'local')
    global_ = plan_sizes(factors, (333, 517), 'global')
    height, width = 333, 517
    for size in local:
        height, width = math.floor(height * 0.7), math.floor(width * 0.7)
        assert size == (height, width)
    assert global_[-1] == (round(333 * 0.343), round(517 * 0.343))
    assert local[-1] != global_[-1]  # floors pile up, the global rule does not


def test_chain_with_fixed_strides():
    steps = [('stride', 2), ('adaptor', 0), ('stride', 2), ('adaptor', 1)]
    sizes, final = plan_chain([0.9, 0.8], steps, (101, 67), 'global')
    assert sizes == [(round(101 * 0.45), round(67 * 0.45)), (round(101 * 0.18),
                                                              round(67 * 0.18))]
    sizes, final = plan_chain([0.9, 0.8], steps, (101, 67), 'local')
    assert sizes[0] == (math.floor(51 * 0.9), math.floor(34 * 0.9))
    assert final == (math.floor(23 * 0.8), math.floor(16 * 0.8))


def test_cap_rescales_factor_and_weight_consistently():
    # p * s must be the factor of the rescaled weight: s' = (r2 - r1) sigma' + r1.
    adaptor = ShapeAdaptor(r1=0.5, r2=1.0, alpha_init=1.3)
    p = cap_scale(100.0, 40, 3)
    assert p == pytest.approx((40 / 100)**(1 / 3))
    sigma = float(adaptor.sigma(p).detach())
    assert 0.5 * sigma + 0.5 == pytest.approx(p * adaptor.factor())
    assert cap_scale(30.0, 40, 3) == 1.0 and cap_scale(300.0, None, 3) == 1.0


def test_gradient_reaches_alpha_and_every_parameter():
    torch.manual_seed(0)
    for adaptor in (ShapeAdaptor(alpha_init=0.3),
                    ShapeAdaptor(in_channels=4, branch='conv', alpha_init=-0.2)):
        adaptor(torch.rand(2, 4, 21, 35)).square().mean().backward()
        for name, param in adaptor.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert adaptor.alpha.grad.abs() > 0


def test_frozen_adaptor_computes_what_the_learned_one_did():
    x = torch.rand(1, 2, 20, 30)
    learned = ShapeAdaptor(alpha_init=0.5)
    frozen = ShapeAdaptor(frozen_factor=learned.factor())
    assert not list(frozen.parameters())
    assert isinstance(frozen.sigma(), float)  # a constant: no device copy, no sync
    torch.testing.assert_close(frozen(x), learned(x).detach())


def test_external_branches():
    adaptor = ShapeAdaptor(branch='external', residual=True, alpha_init=0.0)
    low, high = torch.rand(1, 2, 5, 6), torch.rand(1, 2, 10, 11)
    out = adaptor.mix(low, high, (7, 8))
    assert out.shape[-2:] == (7, 8)
    with pytest.raises(RuntimeError, match='call mix'):
        adaptor(high)


def test_two_instances_are_independent():
    first = ShapeAdaptor(alpha_init=-1.0)
    second = MODEL_REGISTRIES['mmdet'].build(dict(type='ShapeAdaptor', alpha_init=1.0))
    with torch.no_grad():
        first.alpha.add_(3.0)
    assert second.factor() == pytest.approx(factor_from_alpha(1.0, 0.5, 1.0))
    assert first.factor() == pytest.approx(factor_from_alpha(2.0, 0.5, 1.0))
    assert alpha_from_factor(first.factor(), 0.5, 1.0) == pytest.approx(2.0)


@pytest.mark.parametrize('kwargs, match', [
    (dict(r1=0.8, r2=0.5), 'r1 must be smaller than r2'),
    (dict(r1=0.5, r2=0.5), 'r1 must be smaller than r2'),
    (dict(r1=0.0), r'r1 must be a resizing factor in \(0, 1\]'),
    (dict(r2=1.5), r'r2 must be a resizing factor in \(0, 1\]'),
    (dict(size_rule='nearest'), r"size_rule must be one of \('local', 'global'\)"),
    (dict(branch='avg'), r"branch must be one of \('pool', 'conv', 'external'\)"),
    (dict(branch='conv'), 'needs in_channels'),
    (dict(frozen_factor=1.2), 'frozen_factor must be a factor strictly between'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapeAdaptor(**kwargs)


def test_tiny_inputs_keep_one_pixel():
    adaptor = ShapeAdaptor(alpha_init=-5.0)
    assert adaptor(torch.rand(1, 1, 1, 9)).shape[-2:] == (1, 4)
    assert plan_sizes([0.5] * 4, (3, 5))[-1] == (1, 1)
    with pytest.raises(ValueError, match='strictly between r1=0.5 and r2=1.0'):
        alpha_from_factor(0.5, 0.5, 1.0)
