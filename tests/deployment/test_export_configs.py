"""Every config family exports to ONNX and onnxruntime agrees with PyTorch.

Exporting all ~60 configs takes about 20 minutes on one core, so each family of
``mmplug_agg.testing.families`` (configs built from the same modules in the same
arrangement) is exported through its representative, a demo config (same
architecture, smaller widths), built with random weights and no ``init_weights``
(nothing downloaded). A test checks that every config in ``configs/`` belongs to
a family and that docs/deployment.md's table names every config. Where a family's
graph is correct at any size the preprocessor can give, it is exported with
dynamic height/width and checked at two sizes; otherwise at the traced size (the
reason is in ``EXPORT`` and in docs/deployment.md).
"""
import importlib.util
import re

import pytest
import torch
from mmengine.config import Config

import mmplug_agg  # noqa: F401
from mmplug_agg.deployment import UnsupportedExport, export_onnx, verify_onnx
from mmplug_agg.deployment.folding import calibrate_random_weight_standardisation
from mmplug_agg.deployment.onnx import calibrate_random_batch_norm
from mmplug_agg.testing.cli import CONFIG_DIR, REPO_ROOT, TOOLS_DIR
from mmplug_agg.testing.families import FAMILIES, shipped_configs
from mmplug_agg.utils.launch import build_model

pytest.importorskip('onnxruntime')
pytestmark = pytest.mark.slow

SHAPE = (96, 128)
DYNAMIC = (SHAPE, (64, 160))  # both multiples of 32, as a pad_size_divisor of 32 gives
DYNAMIC_ODD = (SHAPE, (73, 109))  # segmentors whose preprocessor pads to a fixed size only
STATIC = (SHAPE, )
# family -> (sizes: one = static export, two = dynamic export checked at both; cfg options)
EXPORT = {
    'fpn_faster_rcnn': (DYNAMIC, {}),
    'fpn_soft_roi_faster_rcnn': (DYNAMIC, {}),
    'augfpn_faster_rcnn': (DYNAMIC, {}),
    'augfpn_mask_rcnn': (DYNAMIC, {}),
    'fcos': (DYNAMIC, {}),
    'retinanet': (DYNAMIC, {}),
    'panet': (DYNAMIC, {}),
    'bifpn_faster_rcnn': (DYNAMIC, {}),
    # TF 'same' max-pool padding is computed from Python sizes: one size per graph (the
    # *_effdet configs, symmetric padding, export dynamic; docs/deployment.md).
    'efficientdet': (((128, 128), ), {}),
    'hrnetv2p_faster_rcnn': (DYNAMIC, {}),
    'rfp': (DYNAMIC, {}),
    'rfp_swin': (DYNAMIC, {}),
    # Deformable SAC has no ONNX op: exported with use_deform=False. SAC's reflect pad
    # needs >= 3 pixels at stride 32, which the smaller size does not give.
    'detectors': (STATIC, {'model.backbone.backbone.sac.use_deform': False}),
    # DLA-Up's fit_size crops/pads by Python sizes: sides that are multiples of 32 only.
    'centernet': (DYNAMIC, {}),
    # Graphs with mmseg's HRNet backbone hold the traced size only (measured 0.11 off at
    # 64x160, 0.064 at 73x109 with a dynamic export; cause in mmseg's code not pinned).
    'hrnetv2_seg': (STATIC, {}),
    'deeplabv3plus_hrnetv2': (STATIC, {}),
    'deeplabv1': (DYNAMIC_ODD, {}),
    'deeplabv2': (DYNAMIC_ODD, {}),
    'deeplabv3plus_xception': (DYNAMIC_ODD, {}),
    'deeplabv3plus_dla': (DYNAMIC_ODD, {}),
    'dlaup_seg': (DYNAMIC, {}),
}
# Learnable Shape Adaptor families export frozen (tools/misc/export_shape_adaptor.py);
# the frozen backbone plans sizes in Python, so at the traced size only.
FROZEN_SHAPE_ADAPTOR = ('shape_adaptor_faster_rcnn', 'shape_adaptor_seg',
                        'shape_adaptor_dlaup_seg')


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_config_belongs_to_one_exported_family():
    members = [m for _, configs in FAMILIES.values() for m in configs]
    assert len(members) == len(set(members)), 'a config is in two families'
    assert sorted(members) == shipped_configs(), (
        f'not in a family: {sorted(set(shipped_configs()) - set(members))}; '
        f'no such config: {sorted(set(members) - set(shipped_configs()))}')
    # Every family is exported by one of the tests below.
    assert not set(EXPORT) & set(FROZEN_SHAPE_ADAPTOR)
    assert set(EXPORT) | set(FROZEN_SHAPE_ADAPTOR) == set(FAMILIES)


def test_deployment_docs_table_names_every_config_and_family():
    text = (REPO_ROOT / 'docs' / 'deployment.md').read_text()
    table = '\n'.join(line for line in text.splitlines() if line.startswith('|'))
    named = set(re.findall(r'`([a-z0-9_]+)`', table))
    assert set(shipped_configs()) <= named, sorted(set(shipped_configs()) - named)
    assert set(FAMILIES) <= named, sorted(set(FAMILIES) - named)


# The frozen DLA Shape Adaptor resamples at non-integer factors in every stage; with
# random weights its float32 output is itself 3.4e-4 (1.2e-4 scaled) from a float64 run
# of the same model, onnxruntime's 2.5e-4 (measured 2026-12-02): the bound sits above that.
# DetectoRS (two recursive backbone passes, weight-standardised convs): on an AVX-512
# machine onnxruntime reached 1.13e-4 scaled on one level's class scores, its
# features 5.7e-5 (2026-12-02), where earlier machines stayed below 1e-4.
TOLERANCE = {'shape_adaptor_dlaup_seg': 2e-4, 'detectors': 2e-4}


def check_export(tmp_path, cfg, sizes, name):
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    calibrate_random_weight_standardisation(model)
    calibrate_random_batch_norm(model, sizes[0])
    dynamic = len(sizes) > 1
    graphs = export_onnx(model, sizes[0], str(tmp_path / f'{name}.onnx'), dynamic_shape=dynamic)
    two_stage = 'roi_head' in cfg.model
    assert [g.kind for g in graphs] == (['dense', 'roi'] if two_stage else [
        'segmentor' if cfg.default_scope == 'mmseg' else 'dense'])
    # Parity means something only if the head's outputs depend on the image (without BN
    # calibration EfficientDet's were the same for every image, to 4e-9).
    reference = graphs[0].reference
    with torch.no_grad():
        image, = graphs[0].make_inputs(sizes[0])
        first = reference(image)
        other = reference(torch.randn(image.shape, generator=torch.Generator().manual_seed(1)))
    first, other = (out[0] if isinstance(out, tuple) else out for out in (first, other))
    assert float((first - other).abs().max()) > 0.1, 'outputs do not depend on the input'
    results = verify_onnx(graphs, list(sizes), tolerance=TOLERANCE.get(name, 1e-4))
    assert len(results) == len(graphs) * len(sizes)
    for parity in results:
        print(name, parity)
        assert parity.ok, str(parity)


@pytest.mark.parametrize('family', sorted(EXPORT))
def test_family_exports_with_ort_parity(tmp_path, family):
    sizes, options = EXPORT[family]
    cfg = Config.fromfile(str(CONFIG_DIR / f'{FAMILIES[family][0]}.py'))
    if options:
        cfg.merge_from_dict(options)
    check_export(tmp_path, cfg, sizes, family)


def load_export_shape_adaptor():
    spec = importlib.util.spec_from_file_location(
        'export_shape_adaptor_tool', TOOLS_DIR / 'misc' / 'export_shape_adaptor.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('family', FROZEN_SHAPE_ADAPTOR)
def test_frozen_shape_adaptor_exports_with_ort_parity(tmp_path, family):
    """What tools/misc/export_shape_adaptor.py writes from a trained model exports."""
    cfg = Config.fromfile(str(CONFIG_DIR / f'{FAMILIES[family][0]}.py'))
    model, _ = build_model(cfg)
    with pytest.raises(UnsupportedExport, match='export_shape_adaptor.py'):
        export_onnx(model, SHAPE, str(tmp_path / 'learnable.onnx'))
    # Distinct learned alphas: some adaptors keep the size, some downsample further.
    alphas = [1.5 - 0.9 * k for k in range(len(model.backbone.adaptors))]
    frozen_cfg, factors = load_export_shape_adaptor().export(cfg, alphas)
    assert len(set(round(f, 3) for f in factors)) > 1
    check_export(tmp_path, frozen_cfg, STATIC, family)


def test_deformable_sac_is_refused():
    cfg = Config.fromfile(str(CONFIG_DIR / 'detectors_cascade_rcnn_r50_demo.py'))
    model, _ = build_model(cfg)
    with pytest.raises(UnsupportedExport, match='use_deform=True'):
        export_onnx(model, SHAPE, 'unused.onnx')
