"""Mixed-precision training: every demo config trains one step under CPU bfloat16 autocast.

The step goes through ``model.train_step`` with :class:`CPUAmpOptimWrapper`, the
wrapper ``tools/train.py --amp`` picks on a CPU-only host, exactly as the runner
drives it. mmcv's float32-only CPU kernels (NMS, RoIAlign, deformable conv, used by
SAC and DCN) compute in float32 inside that context; the checks below compare them
with their float32 results. The same step on CUDA (float16, loss scaling) is part
of ``tools/misc/gpu_check.sh``.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPERS, init_default_scope

import mmplug_agg  # noqa: F401
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing.cli import CONFIG_DIR
from mmplug_agg.testing.families import representatives
from mmplug_agg.testing.synthetic import make_batch_for_model
from mmplug_agg.utils.launch import enable_amp

# Where the CPU computes bfloat16 natively (AVX-512 BF16, AMX) every demo config runs.
# Where it does not (AVX2 only), oneDNN emulates bfloat16 convolutions some 40x slower
# than float32 (a full VGG-16 step takes minutes): there one demo config per model
# family runs (mmplug_agg.testing.families, the families the export tests use), and
# segmentors (full-width backbones: VGG-16, Xception-65, ResNet-101) at 32x32 instead of
# their demos' 256x256 crop.
NATIVE_BF16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
DEMO_CONFIGS = sorted(CONFIG_DIR.glob('*_demo.py'))
if not NATIVE_BF16:
    DEMO_CONFIGS = sorted(CONFIG_DIR / f'{name}.py' for name in representatives().values())
# Small inputs keep 30+ configs within seconds each. SAC pads its switch input by 2
# (reflect) at every stride, so its stride-32 maps need at least 3 pixels.
SHAPE = (64, 96)
SAC_SHAPE = (96, 128)
EMULATED_BF16_SEG_SHAPE = (32, 32)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny steps gain nothing from more, and on a shared
    machine idle OpenMP threads spinning for work cost several times the step itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def uses_sac(cfg: Config) -> bool:
    return "'SAC'" in str(cfg.model)


def conv_output_dtypes(model: torch.nn.Module) -> list:
    """Hooks recording the output dtype of every plain conv during the step."""
    dtypes = []
    for module in model.modules():
        if type(module) is torch.nn.Conv2d:
            module.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    return dtypes


@pytest.mark.parametrize('path', DEMO_CONFIGS, ids=lambda p: p.stem)
def test_demo_config_trains_one_step_with_cpu_amp(path):
    torch.manual_seed(0)
    cfg = Config.fromfile(str(path))
    enable_amp(cfg)  # what --amp does to the config on this CPU-only host
    if not NATIVE_BF16 and cfg.default_scope == 'mmseg':
        # the demo data preprocessors pad every input to the 256x256 crop
        cfg.model.data_preprocessor.size = EMULATED_BF16_SEG_SHAPE
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    init_default_scope(cfg.default_scope)
    model = MODEL_REGISTRIES[cfg.default_scope].build(cfg.model)
    model.init_weights()
    model.train()
    optim_wrapper = OPTIM_WRAPPERS.build(
        dict(type='CPUAmpOptimWrapper', optimizer=torch.optim.SGD(model.parameters(), lr=1e-3)))
    before = {name: p.detach().clone() for name, p in model.named_parameters()
              if p.requires_grad}
    dtypes = conv_output_dtypes(model)
    shape = SAC_SHAPE if uses_sac(cfg) else SHAPE
    if not NATIVE_BF16 and cfg.default_scope == 'mmseg':
        shape = EMULATED_BF16_SEG_SHAPE
    batch = make_batch_for_model(model, cfg.default_scope, shape, batch_size=2)

    log_vars = model.train_step(batch, optim_wrapper)

    assert torch.bfloat16 in dtypes, 'autocast was not in effect'
    bad = {k: float(v) for k, v in log_vars.items() if not torch.isfinite(torch.as_tensor(v))}
    assert not bad, f'non-finite losses under AMP: {bad}'
    # Every part (backbone, neck, heads) was updated. Not every tensor: a residual
    # branch behind a zero-initialised BN (zero_init_residual) gets no gradient yet.
    changed = {name.split('.')[0] for name, p in model.named_parameters()
               if name in before and not torch.equal(p.detach(), before[name])}
    parts = {name.split('.')[0] for name in before}
    assert changed == parts, f'not updated: {sorted(parts - changed)}'
    for p in model.parameters():
        assert p.dtype == torch.float32  # master weights stay float32


def test_amp_flag_picks_the_wrapper_of_the_device(monkeypatch):
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'bfloat16'
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=1))))
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'


def test_cpu_amp_wrapper_refuses_float16_and_keeps_state():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match='bfloat16'):
        OPTIM_WRAPPERS.build(dict(type='CPUAmpOptimWrapper', dtype='float16',
                                  optimizer=torch.optim.SGD(model.parameters(), lr=1)))
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='CPUAmpOptimWrapper', optimizer=torch.optim.SGD(model.parameters(), lr=1)))
    with wrapper.optim_context(model):
        out = model(torch.ones(1, 2))
    assert out.dtype == torch.bfloat16
    state = wrapper.state_dict()
    assert 'loss_scaler' in state
    wrapper.load_state_dict(dict(state, loss_scaler={'scale': 65536.0}))  # a GPU run's state


def test_mmcv_cpu_ops_compute_in_float32_under_autocast():
    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack, RoIAlign, nms
    torch.manual_seed(0)
    x = torch.randn(2, 8, 12, 16, requires_grad=True)
    boxes = torch.tensor([[0, 1., 1., 9., 7.], [1, 2., 0., 15., 11.], [0, 0., 0., 4., 4.]])
    for layer in (RoIAlign((3, 3), 0.5, sampling_ratio=2),
                  DeformConv2dPack(8, 4, 3, padding=1),
                  ModulatedDeformConv2dPack(8, 4, 3, padding=1)):
        reference = layer(x, boxes) if isinstance(layer, RoIAlign) else layer(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = x.to(torch.bfloat16)
            out = layer(low, boxes) if isinstance(layer, RoIAlign) else layer(low)
        assert out.dtype == torch.bfloat16  # the dtype of its input, as on CUDA
        torch.testing.assert_close(out.float(), reference, atol=0.1, rtol=0.05)
        out.float().sum().backward()
        assert torch.isfinite(x.grad).all()
        x.grad = None
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    dets = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.],
                         [0., 0., 9., 10.]])
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _, keep = nms(dets.to(torch.bfloat16), scores.to(torch.bfloat16), 0.5)
    assert keep.tolist() == nms(dets, scores, 0.5)[1].tolist() == [0, 2]


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('mode', ['fastattn', 'attn'])
def test_bifpn_fusion_weights_are_normalised_in_float32(mode, dtype):
    """Under autocast the fusion weights are normalised in float32, then cast once."""
    from mmplug_agg.models.necks.bifpn import BiFPNNode
    node = BiFPNNode(3, [3, 3, 4], [8, 8, 8], 8, fusion_mode=mode)
    with torch.no_grad():
        node.fusion_weights.copy_(torch.tensor([0.3, 1e-3, 2.7]))
    inputs = [torch.randn(2, 8, 5, 7).to(dtype) for _ in range(3)]
    raw = node.fusion_weights.detach()
    expected = torch.softmax(raw, 0) if mode == 'attn' else raw.relu() / (raw.relu().sum() +
                                                                            node.fusion_eps)
    expected = expected.to(dtype)  # one rounding, from the float32 weights
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = node.fuse(inputs)
    assert out.dtype == dtype
    reference = inputs[0] * expected[0]
    for x, w in zip(inputs[1:], expected[1:]):
        reference = torch.addcmul(reference, x, w)
    assert torch.equal(out, reference)
