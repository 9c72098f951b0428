"""The timm:// checkpoint scheme: timm's pretrained weights, converted, through init_cfg."""
import pytest
import timm
import torch

import mmplug_agg  # noqa: F401  (registers the schemes)
from mmplug_agg.models.backbones import DLA


@pytest.fixture
def offline_timm(monkeypatch):
    """timm.create_model whose 'pretrained' weights are a fixed random init (no download)."""
    real_create = timm.create_model
    requested = []

    def create_model(name, pretrained=False, **kwargs):
        requested.append((name, pretrained))
        torch.manual_seed(123)
        return real_create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, 'create_model', create_model)
    return real_create, requested


def test_timm_scheme_loads_converted_dla_weights(offline_timm):
    real_create, requested = offline_timm
    model = DLA('dla46_c', out_indices=(5, ),
                init_cfg=dict(type='Pretrained', checkpoint='timm://dla46_c.in1k'))
    model.init_weights()
    assert requested == [('dla46_c.in1k', True)]
    torch.manual_seed(123)
    reference = real_create('dla46_c', pretrained=False).eval()
    model.eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image)[0], reference.forward_features(image))


def test_timm_scheme_rejects_families_it_cannot_convert(offline_timm):
    from mmplug_agg.utils.checkpoint import load_timm_checkpoint
    with pytest.raises(ValueError, match="supports the families \\['dla', 'xception'\\]"):
        load_timm_checkpoint('timm://resnet18')
