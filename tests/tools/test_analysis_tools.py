"""get_flops and benchmark on a small detector and a small segmentor, and their CLI errors.

The configs are mmdet's and mmseg's own, shrunk (ResNet-18 with a 64-channel
FPN, fewer proposals, 128x128 images) so that the whole file runs in well under
a minute on two CPU cores; nothing is downloaded (no pretrained weights).
"""
import os.path as osp
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import mmdet
import mmseg
import pytest
import torch
from mmengine.config import Config

from mmplug_agg.testing import make_det_batch, make_seg_batch
from mmplug_agg.testing.cli import load_tool, run_tool_in_process
from mmplug_agg.testing.synthetic import make_batch_for_model
from mmplug_agg.utils.launch import build_model

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS_DIR = osp.join(REPO_ROOT, 'tools', 'analysis_tools')
MMDET_CONFIGS = osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs')
MMSEG_CONFIGS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs')
SHAPE = (128, 128)


def load_analysis_tool(name: str) -> ModuleType:
    return load_tool(Path(TOOLS_DIR) / f'{name}.py')


@pytest.fixture(scope='module')
def get_flops() -> ModuleType:
    return load_analysis_tool('get_flops')


@pytest.fixture(scope='module')
def benchmark() -> ModuleType:
    return load_analysis_tool('benchmark')


def faster_rcnn_r18() -> Config:
    cfg = Config.fromfile(osp.join(MMDET_CONFIGS, 'faster_rcnn', 'faster-rcnn_r50_fpn_1x_coco.py'))
    cfg.model.backbone.update(depth=18, init_cfg=None)
    cfg.model.neck.update(in_channels=[64, 128, 256, 512], out_channels=64)
    cfg.model.rpn_head.update(in_channels=64, feat_channels=64)
    cfg.model.roi_head.bbox_roi_extractor.out_channels = 64
    cfg.model.roi_head.bbox_head.update(in_channels=64, fc_out_channels=256)
    # The RoI head's cost grows with the proposals; fewer keep the test fast.
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    return cfg


def fcn_hr18s() -> Config:
    cfg = Config.fromfile(
        osp.join(MMSEG_CONFIGS, 'hrnet', 'fcn_hr18s_4xb2-40k_cityscapes-512x1024.py'))
    cfg.model.pretrained = None
    cfg.model.backbone.init_cfg = None
    # Training pads every image to this size; keep it at the test's image size.
    cfg.model.data_preprocessor.size = SHAPE
    return cfg


CONFIGS = {'faster_rcnn_r18': faster_rcnn_r18, 'fcn_hr18s': fcn_hr18s}
# Top-level modules that must hold parameters and learn in one train step.
TRAINED_MODULES = {
    'faster_rcnn_r18': ('backbone', 'neck', 'rpn_head', 'roi_head'),
    'fcn_hr18s': ('backbone', 'decode_head'),
}


def test_det_batch_fits_data_preprocessor_with_masks():
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    batch = make_det_batch(2, (100, 120), num_classes=5, with_mask=True, num_boxes=4)
    assert [image.dtype for image in batch['inputs']] == [torch.uint8] * 2
    assert batch['inputs'][0].shape == (3, 100, 120)
    sample = batch['data_samples'][0]
    assert sample.metainfo['img_shape'] == sample.metainfo['ori_shape'] == (100, 120)
    assert sample.metainfo['scale_factor'] == (1.0, 1.0) and sample.metainfo['flip'] is False
    boxes = sample.gt_instances.bboxes.tensor
    assert boxes.shape == (4, 4) and (boxes[:, 2:] > boxes[:, :2]).all()
    assert (boxes[:, 2] <= 120).all() and (boxes[:, 3] <= 100).all()
    assert sample.gt_instances.labels.max() < 5
    assert sample.gt_instances.masks.masks.shape == (4, 100, 120)

    preprocessor = DetDataPreprocessor(pad_size_divisor=32, pad_mask=True)
    data = preprocessor(batch, True)
    assert data['inputs'].shape == (2, 3, 128, 128)
    out = data['data_samples'][0]
    assert out.batch_input_shape == out.pad_shape == (128, 128)
    assert out.gt_instances.masks.masks.shape == (4, 128, 128)

    again = make_det_batch(2, (100, 120), num_classes=5, with_mask=True, num_boxes=4)
    assert torch.equal(again['inputs'][1], batch['inputs'][1])


def test_seg_batch_fits_data_preprocessor():
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    batch = make_seg_batch(2, (96, 112), num_classes=7)
    label_map = batch['data_samples'][0].gt_sem_seg.data
    assert label_map.shape == (1, 96, 112) and label_map.dtype == torch.int64
    assert 0 <= label_map.min() and label_map.max() < 7
    assert batch['data_samples'][0].metainfo['pad_shape'] == (96, 112)

    data = SegDataPreProcessor(size=(128, 128))(batch, True)
    assert data['inputs'].shape == (2, 3, 128, 128)
    assert data['data_samples'][1].gt_sem_seg.data.shape == (1, 128, 128)


@pytest.mark.parametrize('name', CONFIGS)
def test_compute_complexity(get_flops, name):
    cfg = CONFIGS[name]()
    result = get_flops.compute_complexity(cfg, SHAPE)

    model, _ = build_model(cfg)
    assert result['flops'] > 0
    assert result['params'] == sum(p.numel() for p in model.parameters())
    assert sum(result['module_params'].values()) == result['params']
    assert set(TRAINED_MODULES[name]) <= set(result['module_params'])
    assert result['input_shape'] == (1, 3, *SHAPE)
    assert 'FLOPs:' in get_flops.format_report(result)


def test_compute_complexity_unknown_type(get_flops):
    cfg = fcn_hr18s()
    cfg.model.type = 'NoSuchSegmentor'
    with pytest.raises(KeyError, match='NoSuchSegmentor'):
        get_flops.compute_complexity(cfg, SHAPE)


def test_table_of_configs_with_a_paper_check_and_a_failure(get_flops, tmp_path, monkeypatch):
    good, bad = tmp_path / 'small_r18.py', tmp_path / 'broken.py'
    faster_rcnn_r18().dump(str(good))
    broken = fcn_hr18s()
    broken.model.type = 'NoSuchSegmentor'
    broken.dump(str(bad))
    # Pretend a paper measured small_r18 at 128x128, to exercise the check column.
    monkeypatch.setitem(get_flops.PAPER_COMPLEXITY, 'small_r18', (SHAPE, 1e6, 1e9, 'a paper'))
    out = tmp_path / 'flops.md'
    get_flops.write_table(out, [good, bad])
    rows = [line for line in out.read_text().splitlines() if line.startswith('| `')]
    assert len(rows) == 2
    cells = [cell.strip() for cell in rows[0].split('|')]
    assert cells[1:4] == ['`small_r18`', 'FasterRCNN', '128x128']
    assert float(cells[4]) > 1 and float(cells[6]) > 0
    assert 'a paper' in cells[7] and 'ours / paper' in cells[7]
    assert 'failed: KeyError' in rows[1] and 'NoSuchSegmentor' in rows[1]


def test_weight_standardised_convs_compute_with_their_random_weights(get_flops):
    from mmcv.cnn.bricks.conv_ws import ConvAWS2d
    torch.manual_seed(0)
    conv = ConvAWS2d(8, 16, 3, padding=1)
    plain = torch.nn.Conv2d(8, 16, 3, padding=1)
    plain.load_state_dict({k: v for k, v in conv.state_dict().items() if 'weight_' not in k})
    get_flops._calibrate_weight_standardisation(torch.nn.Sequential(conv))
    x = torch.randn(1, 8, 9, 11)
    torch.testing.assert_close(conv(x), plain(x), rtol=1e-4, atol=1e-5)


def test_batch_shape_defaults_and_square():
    segmentor = SimpleNamespace(num_classes=3)  # all a segmentation batch reads
    assert make_batch_for_model(segmentor, 'mmseg')['inputs'][0].shape == (3, 512, 1024)
    assert make_batch_for_model(segmentor, 'mmseg', [64])['inputs'][0].shape == (3, 64, 64)
    with pytest.raises(ValueError, match='toolbox'):
        make_batch_for_model(segmentor, 'mmpose', SHAPE)


@pytest.mark.parametrize('name', CONFIGS)
def test_run_benchmark(benchmark, name):
    result = benchmark.run_benchmark(CONFIGS[name](),
                                     SHAPE,
                                     batch_size=1,
                                     num_iters=2,
                                     warmup=1,
                                     mode='both',
                                     device='cpu')

    for mode in ('inference', 'train'):
        timing = result[mode]
        assert len(timing['times_ms']) == 2
        assert timing['mean_ms'] > 0 and timing['median_ms'] > 0 and timing['images_per_s'] > 0
        assert timing['peak_memory_mib'] >= 0
        assert timing['input_shape'] == (1, 3, *SHAPE)
    assert 'getrusage' in result['memory_metric']
    assert 'inference' in benchmark.format_report(result)


@pytest.mark.parametrize('name', CONFIGS)
def test_train_step_updates_parameters(benchmark, name):
    model, toolbox = build_model(CONFIGS[name]())
    model.train()
    batch = make_batch_for_model(model, toolbox, SHAPE, batch_size=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    scaler = torch.amp.GradScaler('cpu', enabled=False)

    benchmark.train_step(model, batch, optimizer, scaler)

    after = dict(model.named_parameters())
    changed = {n.split('.')[0] for n, p in before.items() if not torch.equal(p, after[n])}
    assert set(TRAINED_MODULES[name]) <= changed
    assert all(torch.isfinite(p).all() for p in after.values())


UNKNOWN_TYPE_CONFIG = "default_scope = 'mmdet'\nmodel = dict(type='NoSuchDetector')\n"


@pytest.mark.parametrize('tool, problem', [('get_flops', 'missing'), ('benchmark', 'missing'),
                                           ('benchmark', 'unknown type')])
def test_cli_error_is_one_line(tmp_path, tool, problem, monkeypatch, capsys):
    config = tmp_path / 'config.py'
    expected = 'does not exist'
    if problem == 'unknown type':
        config.write_text(UNKNOWN_TYPE_CONFIG)
        expected = 'NoSuchDetector is not in the mmdet::model registry'
    path = Path(TOOLS_DIR) / f'{tool}.py'
    if problem == 'missing':  # refused before anything is built
        code, stderr = run_tool_in_process(path, [config], REPO_ROOT, monkeypatch, capsys)
    else:  # the whole way, from a fresh interpreter
        proc = subprocess.run([sys.executable, str(path), str(config)], capture_output=True,
                              text=True, cwd=REPO_ROOT, timeout=120)
        code, stderr = proc.returncode, proc.stderr

    assert code == 1
    stderr_lines = stderr.strip().splitlines()
    assert len(stderr_lines) == 1, stderr
    assert stderr_lines[0].startswith('error:') and expected in stderr_lines[0]
