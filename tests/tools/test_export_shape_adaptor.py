"""tools/misc/export_shape_adaptor.py: every mode freezes to a model that computes what the
trained one did, the frozen model exports to ONNX and onnxruntime matches torch; errors."""
import io
import sys
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing.cli import (CONFIG_DIR, TOOLS_DIR, last_line, load_tool,
                                    run_tool_in_process)

EXPORT = TOOLS_DIR / 'misc' / 'export_shape_adaptor.py'
DEMO_CFG = CONFIG_DIR / 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py'
DLA_CFG = CONFIG_DIR / 'shape_adaptor_dla34up_cityscapes_demo.py'
SMALL = dict(base_channels=8, stem_channels=8)
MODES = {
    'residual': (DEMO_CFG, dict(SMALL)),
    'residual-autotl': (DEMO_CFG, dict(SMALL, mode='autotl')),
    'residual-autosc': (DEMO_CFG, dict(SMALL, mode='autosc', limit_dim=None)),
    'pool': (DEMO_CFG, dict(SMALL, adaptor_type='pool', learnable_stem=False)),
    'dla': (DLA_CFG, dict(channels=(4, 4, 8, 8, 16, 16), limit_dim=20)),
}


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmseg_scope():
    init_default_scope('mmseg')


def build_backbone(cfg: Config):
    return MODEL_REGISTRIES['mmseg'].build(cfg.model.backbone).eval()


def trained(cfg: Config, seed: int = 0):
    """The config's backbone with distinct alphas and non-trivial BN statistics."""
    torch.manual_seed(seed)
    model = build_backbone(cfg)
    with torch.no_grad():
        for k, adaptor in enumerate(model.adaptors):
            adaptor.alpha.fill_(1.5 - 0.7 * k)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_cli_exports_and_the_rebuilt_model_computes_the_same(tmp_path, capsys, monkeypatch):
    cfg = Config.fromfile(str(DEMO_CFG))
    cfg.model.backbone.update(SMALL)
    config = tmp_path / 'small.py'
    cfg.dump(str(config))
    learned = trained(cfg)
    checkpoint, out = tmp_path / 'iter_1.pth', tmp_path / 'frozen.py'
    torch.save(dict(meta=dict(), state_dict={f'backbone.{k}': v for k, v in
                                             learned.state_dict().items()}), checkpoint)
    # The CLI in this process (an interpreter start costs more than the whole test).
    monkeypatch.setattr(sys, 'argv', ['export_shape_adaptor.py', str(config), str(checkpoint),
                                      '--out', str(out), '--load-from'])
    load_tool(EXPORT).main()
    assert 'config written to' in last_line(capsys.readouterr().out)

    exported = Config.fromfile(str(out))
    backbone_cfg = exported.model.backbone
    assert backbone_cfg.frozen_factors == pytest.approx(list(learned.learned_factors()))
    assert backbone_cfg.limit_dim == 48  # a hard cap is part of the forward: kept
    assert 'alpha_step' not in exported.optim_wrapper and 'constructor' not in \
        exported.optim_wrapper
    assert isinstance(exported.param_scheduler, list)
    assert exported.load_from == str(checkpoint)
    frozen = build_backbone(exported)
    frozen.load_state_dict(learned.state_dict(), strict=False)
    assert not any(n.endswith('alpha') for n, _ in frozen.named_parameters())
    image = torch.rand(1, 3, 131, 97)
    with torch.no_grad():
        for a, b in zip(learned(image), frozen(image)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('name', list(MODES))
def test_every_mode_freezes_and_exports_to_onnx(name):
    import onnxruntime as ort
    path, overrides = MODES[name]
    cfg = Config.fromfile(str(path))
    cfg.model.backbone.update(overrides)
    learned = trained(cfg)
    tool = load_tool(EXPORT)
    frozen_cfg, factors = tool.export(cfg, [float(a.alpha) for a in learned.adaptors])
    assert list(factors) == pytest.approx(list(learned.learned_factors()))
    frozen = build_backbone(frozen_cfg)
    missing, unexpected = frozen.load_state_dict(learned.state_dict(), strict=False)
    assert not missing and all(k.endswith('alpha') for k in unexpected)
    image = torch.rand(1, 3, 83, 101)
    with torch.no_grad():
        ours = frozen(image)
        for a, b in zip(learned(image), ours):
            torch.testing.assert_close(a, b)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(frozen, (image, ), buffer, dynamo=False, opset_version=17)
    session = ort.InferenceSession(buffer.getvalue(), providers=['CPUExecutionProvider'])
    onnx_outs = session.run(None, {session.get_inputs()[0].name: image.numpy()})
    assert len(onnx_outs) == len(ours)
    for onnx_out, torch_out in zip(onnx_outs, ours):
        torch.testing.assert_close(torch.from_numpy(onnx_out), torch_out, rtol=1e-4,
                                   atol=1e-5)


def run_in_process(args, tmp_path, capsys, monkeypatch) -> str:
    """The tool's stderr for a mistake (exit code 1), without an interpreter start."""
    code, err = run_tool_in_process(EXPORT, args, tmp_path, monkeypatch, capsys)
    assert code == 1, err
    return err


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    tool = load_tool(EXPORT)
    err = run_in_process([DEMO_CFG, tmp_path / 'missing.pth', '--out', tmp_path / 'x.py'],
                         tmp_path, capsys, monkeypatch)
    assert last_line(err).startswith("error: checkpoint '") and 'does not exist' in err

    plain = tmp_path / 'plain.pth'
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), plain)
    err = run_in_process([DEMO_CFG, plain, '--out', tmp_path / 'x.py'], tmp_path, capsys,
                         monkeypatch)
    assert 'no backbone.adaptors.<k>.alpha' in last_line(err)

    err = run_in_process([DEMO_CFG, plain, '--out', tmp_path / 'x.json'], tmp_path, capsys,
                         monkeypatch)
    assert last_line(err).startswith('error: --out must name a .py config file')

    hrnet = Config.fromfile(str(CONFIG_DIR / 'fcn_hrnet_w18_cityscapes_512x1024_80k.py'))
    with pytest.raises(tool.UserFacingError, match="model.backbone.type must be one of"):
        tool.export(hrnet, [0.0])
    with pytest.raises(tool.UserFacingError, match='builds 4 adaptors but the checkpoint has 3'):
        tool.export(Config.fromfile(str(DEMO_CFG)), [0.0, 0.0, 0.0])
