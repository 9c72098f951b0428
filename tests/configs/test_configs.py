"""Every config of configs/ builds; its demo variant runs one loss and one predict step.

Real configs are built without running ``init_weights`` (their ImageNet weights
would be downloaded). Demo variants train from scratch, so they also run a loss
step (gradients must reach every trainable parameter: DDP with
``find_unused_parameters=False``) and a predict step on synthetic inputs.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_det_batch, make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR

CONFIGS = sorted(p for p in CONFIG_DIR.glob('*.py'))
DEMO_CONFIGS = [p for p in CONFIGS if p.stem.endswith('_demo')]


def build_model(cfg: Config):
    init_default_scope(cfg.default_scope)
    return MODEL_REGISTRIES[cfg.default_scope].build(cfg.model)


def num_classes(cfg: Config) -> int:
    model = cfg.model
    if cfg.default_scope == 'mmseg':
        return model.decode_head.num_classes
    head = model.get('roi_head', {}).get('bbox_head') or model.get('bbox_head')
    if isinstance(head, list):  # cascade stages
        head = head[-1]
    return head.num_classes


def test_every_config_has_a_demo_variant():
    real = {p.stem for p in CONFIGS} - {p.stem for p in DEMO_CONFIGS}
    assert real, 'no configs found'
    for stem in real:
        assert (CONFIG_DIR / f'{stem}_demo.py').is_file(), f'{stem} has no demo variant'


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path):
    cfg = Config.fromfile(str(path))
    assert cfg.default_scope in ('mmdet', 'mmseg')
    assert 'mmplug_agg' in cfg.custom_imports.imports
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize('path', DEMO_CONFIGS, ids=lambda p: p.stem)
def test_demo_config_loss_and_predict(path):
    torch.manual_seed(0)
    cfg = Config.fromfile(str(path))
    model = build_model(cfg)
    model.init_weights()
    shape = (160, 224)  # not square; odd sizes are covered by the per-module tests
    if cfg.default_scope == 'mmdet':
        batch = make_det_batch(2, shape, num_classes(cfg), seed=0,
                               with_mask=getattr(model, 'with_mask', False))
    else:
        batch = make_seg_batch(2, shape, num_classes(cfg), seed=0)

    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    no_grad = [name for name, p in model.named_parameters()
               if p.requires_grad and p.grad is None]
    assert not no_grad, f'parameters without a gradient: {no_grad}'

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
        predictions = model(**data, mode='predict')
    assert len(predictions) == 2
    for sample in predictions:
        if cfg.default_scope == 'mmdet':
            assert sample.pred_instances.bboxes.shape[-1] == 4
        else:
            assert sample.pred_sem_seg.data.shape[-2:] == sample.ori_shape


@pytest.mark.parametrize('path', DEMO_CONFIGS, ids=lambda p: p.stem)
def test_demo_config_datasets_build_on_the_demo_data(path, run_dir, monkeypatch):
    """`make demo DEMO_CONFIG=...` must find its data: a demo config inheriting a VOC or
    COCO base must replace the base's datasets whole (no stray ConcatDataset keys)."""
    from mmengine.registry import DATASETS
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    monkeypatch.chdir(run_dir)
    for split in ('train_dataloader', 'val_dataloader'):
        dataset = DATASETS.build(cfg[split].dataset)
        assert len(dataset) > 0, f'{split} of {path.stem} is empty'
