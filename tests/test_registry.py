"""Our classes reach mmdet's and mmseg's registries, straight from user configs."""
import subprocess
import sys
import textwrap

import pytest
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES, register_model

TOY_MODULE = '''
import torch.nn as nn
from mmengine.model import BaseModule
from mmplug_agg.registry import register_neck


@register_neck
class ToyPassThroughNeck(BaseModule):
    """Identity on a tuple of features, with one 1x1 conv per level."""

    def __init__(self, in_channels, out_channels, num_outs=None, init_cfg=None):
        super().__init__(init_cfg)
        self.convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)

    def forward(self, inputs):
        return tuple(conv(x) for conv, x in zip(self.convs, inputs))
'''


@pytest.fixture
def toy_module(tmp_path, monkeypatch):
    """A user's plugin file that registers a neck through mmplug_agg.registry."""
    name = f'toy_neck_{tmp_path.name}'.replace('-', '_')
    (tmp_path / f'{name}.py').write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for registry in MODEL_REGISTRIES.values():
        registry._module_dict.pop('ToyPassThroughNeck', None)
    sys.modules.pop(name, None)


def test_both_toolboxes_are_targets():
    assert set(MODEL_REGISTRIES) == {'mmdet', 'mmseg'}
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert MODEL_REGISTRIES['mmdet'] is DET_MODELS
    assert MODEL_REGISTRIES['mmseg'] is SEG_MODELS


def test_register_model_rejects_unknown_toolbox():
    with pytest.raises(ValueError, match='toolboxes'):
        register_model('mmpose')


def test_mmdet_config_with_custom_imports_builds_plugin_neck(tmp_path, toy_module):
    config = tmp_path / 'user_config.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
        custom_imports = dict(imports=['mmplug_agg', '{toy_module}'],
                              allow_failed_imports=False)
        model = dict(
            backbone=dict(depth=18, init_cfg=None),
            neck=dict(_delete_=True, type='ToyPassThroughNeck',
                      in_channels=[64, 128, 256, 512], out_channels=256))
    '''))
    cfg = Config.fromfile(str(config))
    assert cfg.default_scope == 'mmdet'
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    detector = MODELS.build(cfg.model)
    assert type(detector.neck).__name__ == 'ToyPassThroughNeck'


def test_mmseg_config_with_custom_imports_builds_plugin_neck(tmp_path, toy_module):
    config = tmp_path / 'user_seg_config.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'
        custom_imports = dict(imports=['mmplug_agg', '{toy_module}'],
                              allow_failed_imports=False)
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            pretrained=None,
            neck=dict(type='ToyPassThroughNeck', in_channels=[18, 36, 72, 144],
                      out_channels=18),
            decode_head=dict(in_channels=[18, 18, 18, 18], channels=72))
    '''))
    cfg = Config.fromfile(str(config))
    assert cfg.default_scope == 'mmseg'
    init_default_scope(cfg.default_scope)
    from mmseg.registry import MODELS
    segmentor = MODELS.build(cfg.model)
    assert type(segmentor.neck).__name__ == 'ToyPassThroughNeck'


def test_user_config_builds_our_classes_by_plain_name(tmp_path):
    """A user's project config: an mmdet base, custom_imports, our types by name."""
    config = tmp_path / 'my_augfpn.py'
    config.write_text(textwrap.dedent('''
        _base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
        custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
        model = dict(
            backbone=dict(init_cfg=None),
            neck=dict(type='AugFPN'),
            roi_head=dict(type='ConsistentSupervisionRoIHead',
                          bbox_roi_extractor=dict(type='SoftRoIExtractor')))
    '''))
    cfg = Config.fromfile(str(config))
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    detector = MODELS.build(cfg.model)
    assert type(detector.neck).__name__ == 'AugFPN'
    assert type(detector.roi_head.bbox_roi_extractor).__name__ == 'SoftRoIExtractor'


@pytest.mark.parametrize('missing', ['mmdet', 'mmseg'])
def test_imports_with_only_one_toolbox(missing):
    """Hide one toolbox from the import system; the other still gets our classes."""
    present = 'mmseg' if missing == 'mmdet' else 'mmdet'
    code = textwrap.dedent(f'''
        import sys
        sys.modules['{missing}'] = None  # makes "import {missing}" raise ImportError
        import mmplug_agg
        from mmplug_agg.registry import installed_toolboxes
        assert installed_toolboxes() == ('{present}',), installed_toolboxes()
        print('ok')
    ''')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith('ok')
