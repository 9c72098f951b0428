"""VGG16: parity with torchvision, torchvision:// weights, DeepLab's dense variant,
freezing, gradients, errors."""
import pytest
import torch
import torch.nn as nn
import torchvision
from mmengine.runner import checkpoint as mmengine_checkpoint

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import VGG16
from mmplug_agg.registry import MODEL_REGISTRIES

SMALL = (65, 97)  # odd, not square; pool5 at stride 32 is 2 x 3 (VGG pools floor)


def torchvision_vgg16(batch_norm: bool = False) -> nn.Module:
    """torchvision's ``vgg16``/``vgg16_bn`` with real ``features`` (random weights).

    The 120M-parameter classifier is built on the meta device: it is not part of the
    backbone and initialising it would take seconds.
    """
    with torch.device('meta'):
        model = (torchvision.models.vgg16_bn() if batch_norm else torchvision.models.vgg16())
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'],
                                                  batch_norm=batch_norm)
    assert repr(features) == repr(model.features)  # the very layers of vgg16().features
    model.features = features
    return model


def features_state_dict(tv_model: nn.Module) -> dict:
    return {k: v for k, v in tv_model.state_dict().items() if k.startswith('features.')}


@pytest.mark.parametrize('batch_norm', [False, True], ids=['vgg16', 'vgg16_bn'])
def test_output_stride_32_matches_torchvision_features(batch_norm):
    torch.manual_seed(0)
    reference = torchvision_vgg16(batch_norm)
    model = VGG16(output_stride=32, pooling='vgg', out_indices=(4, ),
                  norm_cfg=dict(type='BN') if batch_norm else None)
    # torchvision's layer layout: its features load strictly, no key renamed.
    model.load_state_dict(features_state_dict(reference), strict=True)
    reference.eval(), model.eval()
    x = torch.randn(2, 3, *SMALL)
    with torch.no_grad():
        expected = reference.features(x)  # the classifier is on the meta device
        (out, ) = model(x)
    assert out.shape == expected.shape == (2, 512, 2, 3)
    assert (out - expected).abs().max().item() < 1e-5


def test_torchvision_scheme_loads_imagenet_layout(monkeypatch):
    # torchvision's checkpoint layout: random features, and its classifier's keys (the
    # backbone skips them; placeholders stand in for the 120M weights).
    state = {k: (v if k.startswith('features.') else torch.empty(0))
             for k, v in torchvision_vgg16().state_dict().items()}
    assert sum(k.startswith('classifier.') for k in state) == 6
    urls = []

    def fake_http(url, map_location=None, **kwargs):
        urls.append(url)
        return state

    monkeypatch.setattr(mmengine_checkpoint, 'load_from_http', fake_http)
    for toolbox in ('mmseg', 'mmdet'):
        model = MODEL_REGISTRIES[toolbox].build(
            dict(type='VGG16', init_cfg=dict(type='Pretrained', checkpoint='torchvision://vgg16')))
        model.init_weights()
        for name, param in model.state_dict().items():
            torch.testing.assert_close(param, state[name], rtol=0, atol=0)
    assert urls and all('vgg16-' in url for url in urls)


def test_deeplab_dense_variant_layers_and_sizes():
    model = VGG16().eval()  # output stride 8, DeepLab's 3x3 pools
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == \
        [(3, 2, 1)] * 3 + [(3, 1, 1)] * 2
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    assert [c.padding[0] for c in convs] == [1] * 10 + [2] * 3
    assert model.out_channels == [64, 128, 256, 512, 512]
    # DeepLab's alignment rule: 32k - 31 pixels give 16k - 15, 8k - 7, 4k - 3 ... (k = 3).
    with torch.no_grad():
        sizes = [tuple(f.shape[-2:]) for f in model(torch.rand(1, 3, 65, 97))]
    assert sizes == [(33, 49), (17, 25), (9, 13), (9, 13), (9, 13)]
    # Output stride 16 keeps pool4 and stops at pool5.
    with torch.no_grad():
        (out, ) = VGG16(output_stride=16, out_indices=4).eval()(torch.rand(1, 3, 65, 97))
    assert out.shape[-2:] == (5, 7)


def test_parameter_count_is_vgg16_convolutions():
    # 13 convolutions of VGG-16 (its 138M include the three fc layers).
    assert sum(p.numel() for p in VGG16().parameters()) == 14_714_688
    bn = VGG16(norm_cfg=dict(type='BN'))
    assert sum(p.numel() for p in bn.parameters()) == 14_714_688 + 2 * 4224


def test_every_parameter_gets_a_gradient_and_stage_outputs():
    model = VGG16(out_indices=(1, 4)).train()
    feats = model(torch.rand(1, 3, *SMALL))
    assert [f.shape[1] for f in feats] == [128, 512]
    sum(f.mean() for f in feats).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]


def test_frozen_stages_and_norm_eval():
    model = VGG16(norm_cfg=dict(type='BN'), frozen_stages=1, norm_eval=True)
    model.train()
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    # Stages 0 and 1: four convolutions and their norms (features 0..13).
    assert frozen == {f'features.{i}.{k}' for i in (0, 1, 3, 4, 7, 8, 10, 11)
                      for k in ('weight', 'bias')}
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    model = VGG16(norm_cfg=dict(type='BN'), frozen_stages=0).train()
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    assert [m.training for m in norms[:3]] == [False, False, True]


@pytest.mark.parametrize('kwargs, message', [
    (dict(out_indices=(0, 5)), r'out_indices must be distinct stages in 0-4'),
    (dict(out_indices=(-1, )), r'out_indices must be distinct stages in 0-4'),
    (dict(out_indices=(2, 2)), r'out_indices'),
    (dict(out_indices=()), r'out_indices'),
    (dict(output_stride=4), r'output_stride must be one of \[8, 16, 32\]'),
    (dict(pooling='max'), r"pooling must be one of \('deeplab', 'vgg'\)"),
    (dict(frozen_stages=5), r'frozen_stages must be in -1..4'),
])
def test_bad_arguments_fail_at_build(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VGG16(**kwargs)
