"""DetectoRSASPP: parity with mmdet's RFP ASPP, branch layout, init, gradients, errors."""
import pytest
import torch
from mmdet.models.necks.rfp import ASPP
from torch import nn

import mmplug_agg  # noqa: F401
from mmplug_agg.models.layers import DetectoRSASPP
from mmplug_agg.registry import MODEL_REGISTRIES


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    # Small maps: a second thread buys nothing but synchronisation, and on a shared
    # machine every sync waits for a busy core (tens of times slower overall).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('dilations', [(1, 3, 6, 1), (1, 2, 1)])
def test_matches_mmdet_aspp_with_the_same_weights(dilations):
    torch.manual_seed(0)
    reference = ASPP(32, 8, dilations)  # PyTorch's default init: random biases too
    ours = DetectoRSASPP(32, 8, dilations)
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert num_params(ours) == num_params(reference)
    x = torch.randn(2, 32, 13, 21)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-6)


def test_branch_layout_and_output_width():
    aspp = DetectoRSASPP(16, 4, dilations=(1, 3, 6, 1))
    assert aspp.num_branches == 4 and aspp.total_channels == 16
    kernels = [(c.kernel_size, c.dilation, c.padding) for c in aspp.aspp]
    assert kernels == [((1, 1), (1, 1), (0, 0)), ((3, 3), (3, 3), (3, 3)),
                       ((3, 3), (6, 6), (6, 6)), ((1, 1), (1, 1), (0, 0))]
    assert all(c.bias is not None for c in aspp.aspp)
    out = aspp(torch.randn(1, 16, 7, 5))  # smaller than the largest dilation: still works
    assert out.shape == (1, 16, 7, 5)
    assert (out >= 0).all()  # every branch ends in ReLU
    pooled = out[:, 12:]
    assert torch.equal(pooled, pooled[..., :1, :1].expand_as(pooled))


def test_default_init_is_kaiming_normal_with_zero_bias():
    torch.manual_seed(0)
    aspp = DetectoRSASPP(256, 64)
    aspp.init_weights()
    for conv in aspp.aspp:
        assert conv.bias.abs().sum() == 0
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected_std = (2.0 / fan_out)**0.5
        assert abs(conv.weight.std().item() / expected_std - 1) < 0.05


def test_every_parameter_gets_a_gradient_and_registry_builds_it():
    aspp = MODEL_REGISTRIES['mmdet'].build(dict(type='DetectoRSASPP', in_channels=8,
                                                 out_channels=2))
    aspp(torch.randn(2, 8, 9, 11)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aspp.parameters())
    assert 'DetectoRSASPP' in MODEL_REGISTRIES['mmseg'].module_dict


@pytest.mark.parametrize('kwargs, name', [
    (dict(dilations=(1, 3, 6)), 'dilations'),
    (dict(dilations=(1, )), 'dilations'),
    (dict(dilations=(1, 0, 1)), 'dilations'),
    (dict(out_channels=0), 'out_channels'),
    (dict(in_channels=2.5), 'in_channels'),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = dict(in_channels=8, out_channels=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        DetectoRSASPP(**args)
