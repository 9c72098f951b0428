"""ShapeAdaptor: the learned factor sets the size, alpha gets gradients, size rules, bad args."""
import math

import pytest
import torch
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.layers import ShapeAdaptor
from mmplug_agg.models.layers.shape_adaptor import (alpha_from_factor, factor_from_alpha,
                                                    plan_sizes)
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


def test_gradient_reaches_alpha_and_every_parameter():
    torch.manual_seed(0)
    for adaptor in (ShapeAdaptor(alpha_init=0.3),
                    ShapeAdaptor(in_channels=4, branch='conv', alpha_init=-0.2)):
        adaptor(torch.rand(2, 4, 21, 35)).square().mean().backward()
        for name, param in adaptor.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert adaptor.alpha.grad.abs() > 0


def test_residual_variant_doubles_and_frozen_is_a_plain_resize():
    x = torch.rand(1, 2, 20, 30)
    plain, residual = ShapeAdaptor(alpha_init=0.5), ShapeAdaptor(alpha_init=0.5, residual=True)
    torch.testing.assert_close(residual(x), 2 * plain(x))
    frozen = ShapeAdaptor(frozen_factor=0.6)
    assert not list(frozen.parameters())
    out = frozen(x)
    assert out.shape[-2:] == (12, 18)
    torch.testing.assert_close(
        out, torch.nn.functional.interpolate(x, size=(12, 18), mode='bilinear'))


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
    (dict(branch='avg'), r"branch must be one of \('pool', 'conv'\)"),
    (dict(branch='conv'), 'needs in_channels'),
    (dict(frozen_factor=1.2), 'frozen_factor must be'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapeAdaptor(**kwargs)


def test_input_too_small_names_the_fix():
    adaptor = ShapeAdaptor(alpha_init=-5.0)
    with pytest.raises(ValueError, match='too small.*num_adaptors'):
        adaptor(torch.rand(1, 1, 1, 9))
    with pytest.raises(ValueError, match='strictly between r1=0.5 and r2=1.0'):
        alpha_from_factor(0.5, 0.5, 1.0)
