"""The output-stride-8 evaluation configs of DeepLab v3+ on Aligned Xception.

Each changes exactly two values of its training config (the backbone's output
stride and the ASPP rates), so a checkpoint trained with the training config
loads into it strictly and is evaluated as the paper does.
"""
import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import AlignedXception
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing.cli import CONFIG_DIR

PAIRS = ['deeplabv3plus_xception65_cityscapes_512x1024_80k', 'deeplabv3plus_xception65_voc12aug']


def flatten(cfg, prefix=''):
    items = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            items.update(flatten(value, f'{prefix}{key}.'))
        else:
            items[f'{prefix}{key}'] = value
    return items


@pytest.mark.parametrize('suffix', ['', '_demo'])
@pytest.mark.parametrize('stem', PAIRS)
def test_os8eval_config_changes_only_the_stride_and_the_rates(stem, suffix):
    train = Config.fromfile(str(CONFIG_DIR / f'{stem}{suffix}.py'))
    evaluate = Config.fromfile(str(CONFIG_DIR / f'{stem}_os8eval{suffix}.py'))
    assert train.model.backbone.output_stride == 16
    assert tuple(train.model.decode_head.dilations) == (1, 6, 12, 18)
    before, after = flatten(train.to_dict()), flatten(evaluate.to_dict())
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed == {'model.backbone.output_stride', 'model.decode_head.dilations'}
    assert after['model.backbone.output_stride'] == 8
    assert tuple(after['model.decode_head.dilations']) == (1, 12, 24, 36)


def test_os8eval_demo_loads_the_demo_checkpoint_strictly():
    stem = 'deeplabv3plus_xception65_voc12aug'
    models = []
    for name in (f'{stem}_demo', f'{stem}_os8eval_demo'):
        cfg = Config.fromfile(str(CONFIG_DIR / f'{name}.py'))
        init_default_scope(cfg.default_scope)
        models.append(MODEL_REGISTRIES[cfg.default_scope].build(cfg.model))
    trained, evaluated = models
    evaluated.load_state_dict(trained.state_dict(), strict=True)
    assert isinstance(evaluated.backbone, AlignedXception)
    branches = list(evaluated.decode_head.aspp_modules)[1:]
    assert [m.depthwise_conv.conv.dilation[0] for m in branches] == [12, 24, 36]
    assert evaluated.backbone.blocks[-1].convs[0].depthwise_conv.conv.dilation[0] == 4
