"""Configs export to ONNX and onnxruntime agrees with PyTorch (one representative per family).

Exporting all ~60 configs takes minutes; each representative below is the demo
variant of a config family (same architecture, smaller widths), built with random
weights and no ``init_weights`` (nothing downloaded). Families and what each
covers are listed in docs/deployment.md. Where a family's graph is correct at
any size, it is exported with dynamic height/width and checked at two sizes.
"""
import pytest
import torch
from mmengine.config import Config

import mmplug_agg  # noqa: F401
from mmplug_agg.deployment import export_onnx, verify_onnx
from mmplug_agg.deployment.folding import calibrate_random_weight_standardisation
from mmplug_agg.testing.cli import CONFIG_DIR
from mmplug_agg.utils.launch import build_model

pytest.importorskip('onnxruntime')

# demo config -> (export size, dynamic shape?, second size or None, cfg options)
REPRESENTATIVES = {
    # AugFPN (RFA) + soft RoI selection + Mask R-CNN: RoI stage with SoftRoIExtractor, masks.
    'augfpn_mask_rcnn_r50_demo': ((96, 128), True, (64, 160), {}),
    # mmdet FPN + SingleRoIExtractor (level mapping without data-dependent indexing).
    'fpn_faster_rcnn_r50_demo': ((96, 128), True, (64, 160), {}),
    # HRNet + HRNetV2p pooling.
    'hrnetv2p_w32_faster_rcnn_1x_coco_demo': ((96, 128), True, (64, 160), {}),
    # RFP + Cascade RoI stage (in-graph box refinement).
    'rfp_cascade_rcnn_r50_demo': ((96, 128), True, (64, 160), {}),
    # DetectoRS with SAC folded (use_deform=False; deformable SAC does not export).
    'detectors_cascade_rcnn_r50_demo': ((96, 128), False, None,
                                        {'model.backbone.backbone.sac.use_deform': False}),
    # Single stage with consistent supervision, FCOS head (three outputs per level).
    'augfpn_fcos_r50_demo': ((96, 128), True, (64, 160), {}),
    # DLA + BiFPN.
    'bifpn_faster_rcnn_dla34_demo': ((96, 128), True, (64, 160), {}),
    # Segmentors: HRNetV2 head; DeepLab v2 head with the CRF left out of the graph.
    'hrnetv2_w18_cityscapes_512x1024_80k_demo': ((96, 128), False, None, {}),
    'deeplabv2_crf_r101_cityscapes_512x1024_80k_demo': ((96, 128), True, (73, 109), {}),
    # DLA-Up decoder: dynamic graphs hold for sides that are multiples of 32 only.
    'dla34up_cityscapes_512x1024_80k_demo': ((96, 128), True, (64, 160), {}),
}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize('stem', sorted(REPRESENTATIVES))
def test_config_exports_with_ort_parity(tmp_path, stem):
    shape, dynamic, second, options = REPRESENTATIVES[stem]
    cfg = Config.fromfile(str(CONFIG_DIR / f'{stem}.py'))
    if options:
        cfg.merge_from_dict(options)
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    calibrate_random_weight_standardisation(model)
    graphs = export_onnx(model, shape, str(tmp_path / f'{stem}.onnx'), dynamic_shape=dynamic)
    two_stage = 'roi_head' in cfg.model
    assert [g.kind for g in graphs] == (['dense', 'roi'] if two_stage else [
        'segmentor' if cfg.default_scope == 'mmseg' else 'dense'])
    results = verify_onnx(graphs, [shape, second] if dynamic else None)
    assert len(results) == len(graphs) * (2 if dynamic else 1)
    for parity in results:
        print(stem, parity)
        assert parity.ok, str(parity)


def test_learnable_shape_adaptor_is_refused_with_the_fix():
    from mmplug_agg.deployment import UnsupportedExport
    cfg = Config.fromfile(str(CONFIG_DIR / 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py'))
    model, _ = build_model(cfg)
    with pytest.raises(UnsupportedExport, match='export_shape_adaptor.py'):
        export_onnx(model, (96, 128), 'unused.onnx')


def test_deformable_sac_is_refused():
    from mmplug_agg.deployment import UnsupportedExport
    cfg = Config.fromfile(str(CONFIG_DIR / 'detectors_cascade_rcnn_r50_demo.py'))
    model, _ = build_model(cfg)
    with pytest.raises(UnsupportedExport, match='use_deform=True'):
        export_onnx(model, (96, 128), 'unused.onnx')
