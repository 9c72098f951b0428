"""tools/misc/export_shape_adaptor.py: export, rebuild with the same sizes, and its errors."""
import importlib.util
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing.cli import CONFIG_DIR, TOOLS_DIR, last_line, run_tool

EXPORT = TOOLS_DIR / 'misc' / 'export_shape_adaptor.py'
DEMO_CFG = CONFIG_DIR / 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py'


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


def test_export_then_rebuild_keeps_the_output_sizes(tmp_path):
    cfg = Config.fromfile(str(DEMO_CFG))
    learned = build_backbone(cfg)
    with torch.no_grad():
        for adaptor, alpha in zip(learned.adaptors, (2.0, -1.5)):
            adaptor.alpha.fill_(alpha)
    checkpoint, out = tmp_path / 'iter_1.pth', tmp_path / 'frozen.py'
    torch.save(dict(meta=dict(), state_dict={f'backbone.{k}': v for k, v in
                                             learned.state_dict().items()}), checkpoint)

    result = run_tool([EXPORT, DEMO_CFG, checkpoint, '--out', out, '--load-from'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'config written to' in last_line(result.stdout)

    exported = Config.fromfile(str(out))
    backbone_cfg = exported.model.backbone
    assert backbone_cfg.frozen_factors == pytest.approx(list(learned.learned_factors()), abs=1e-6)
    assert 'limit_dim' not in backbone_cfg and 'alpha_init' not in backbone_cfg
    assert exported.load_from == str(checkpoint)
    frozen = build_backbone(exported)
    assert not any(n.endswith('alpha') for n, _ in frozen.named_parameters())
    image = torch.rand(1, 3, 131, 97)
    with torch.no_grad():
        assert [o.shape for o in frozen(image)] == [o.shape for o in learned(image)]


def load_export_tool():
    spec = importlib.util.spec_from_file_location('export_shape_adaptor_tool', EXPORT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(tool, args, capsys, monkeypatch) -> str:
    """Run the tool's CLI in this process (no interpreter start); return its stderr."""
    monkeypatch.setattr(sys, 'argv', ['export_shape_adaptor.py', *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        tool.run_cli(tool.main)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def test_errors_are_one_line(tmp_path, capsys, monkeypatch):
    tool = load_export_tool()
    err = run_in_process(tool, [DEMO_CFG, tmp_path / 'missing.pth', '--out', tmp_path / 'x.py'],
                         capsys, monkeypatch)
    assert last_line(err).startswith("error: checkpoint '") and 'does not exist' in err

    plain = tmp_path / 'plain.pth'
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.zeros(1)}), plain)
    err = run_in_process(tool, [DEMO_CFG, plain, '--out', tmp_path / 'x.py'], capsys, monkeypatch)
    assert 'no backbone.adaptors.<k>.alpha' in last_line(err)

    err = run_in_process(tool, [DEMO_CFG, plain, '--out', tmp_path / 'x.json'], capsys,
                         monkeypatch)
    assert last_line(err).startswith('error: --out must name a .py config file')

    hrnet = Config.fromfile(str(CONFIG_DIR / 'fcn_hrnet_w18_cityscapes_512x1024_80k.py'))
    with pytest.raises(tool.UserFacingError, match="model.backbone.type must be one of"):
        tool.export(hrnet, [0.0])
    with pytest.raises(tool.UserFacingError, match='builds 2 adaptors but the checkpoint has 3'):
        tool.export(Config.fromfile(str(DEMO_CFG)), [0.0, 0.0, 0.0])
