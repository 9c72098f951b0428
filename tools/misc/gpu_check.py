"""The Python steps of ``tools/misc/gpu_check.sh``: mmcv's ops, one AMP step per family, benchmarks.

    python tools/misc/gpu_check.py ops   --device cuda --out DIR
    python tools/misc/gpu_check.py amp   --device cuda --out DIR [--configs families|all|NAME...]
    python tools/misc/gpu_check.py bench --device cuda --out DIR [--only dla rfp ...]

Each step writes ``DIR/<step>.json`` and exits 1 when a check failed.

* ``ops``: mmcv's compiled RoIAlign, NMS, deformable and modulated deformable conv
  on the device against the same op on the CPU (forward and input gradients; on
  CUDA also the float16 forward under autocast). On ``--device cpu`` (the
  rehearsal) both sides run on the CPU.
* ``amp``: one training step of the demo config of every model family (the 24 of
  ``mmplug_agg.testing.families``; or every demo config),
  through the optimiser wrapper ``tools/train.py --amp`` uses: mmengine's
  ``AmpOptimWrapper`` (float16, dynamic loss scaling) on CUDA, ``CPUAmpOptimWrapper``
  (bfloat16) on the CPU; losses must be finite.
* ``bench``: ``benchmarks/run_all.py`` with its quick profile, writing its JSON and
  plot into DIR instead of the repository (``docs/benchmarks.md`` is not touched).
"""
import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List

import torch

REPO = Path(__file__).resolve().parents[2]


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


def _forward_backward(layer, args, device):
    """Output and input gradient of ``layer`` on ``device`` (args[0] is the feature map)."""
    layer = layer.to(device)
    x = args[0].detach().to(device).requires_grad_()
    out = layer(x, *[a.to(device) for a in args[1:]])
    out.square().sum().backward()
    return out, x.grad


def check_ops(device: str) -> Dict:
    import copy

    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack, RoIAlign, nms

    torch.manual_seed(0)
    results: Dict[str, Dict] = {}
    feats = torch.randn(2, 16, 40, 56)
    rois = torch.cat([torch.randint(0, 2, (64, 1)).float(),
                      torch.rand(64, 2) * 100, torch.rand(64, 2) * 100 + 100], dim=1)
    deform = DeformConv2dPack(16, 8, 3, padding=1)
    modulated = ModulatedDeformConv2dPack(16, 8, 3, padding=1)
    for layer in (deform, modulated):  # random offsets: sample off the grid
        torch.nn.init.normal_(layer.conv_offset.weight, std=0.1)
    cases = {
        'RoIAlign': (RoIAlign((7, 7), 0.25, sampling_ratio=2, aligned=True), (feats, rois)),
        'DeformConv2d': (deform, (feats, )),
        'ModulatedDeformConv2d': (modulated, (feats, )),
    }
    for name, (layer, args) in cases.items():
        ref_out, ref_grad = _forward_backward(copy.deepcopy(layer), args, 'cpu')
        out, grad = _forward_backward(copy.deepcopy(layer), args, device)
        scale = float(ref_out.detach().abs().max()) + 1e-6
        entry = dict(max_abs_diff=_max_diff(out, ref_out), grad_max_abs_diff=_max_diff(
            grad, ref_grad), output_scale=scale)
        entry['ok'] = entry['max_abs_diff'] < 1e-3 * max(1.0, scale) and entry[
            'grad_max_abs_diff'] < 1e-2 * max(1.0, float(ref_grad.abs().max()))
        if device.startswith('cuda'):
            with torch.autocast('cuda', dtype=torch.float16):
                half = copy.deepcopy(layer).to(device)(*[a.to(device).half() for a in args])
            entry['fp16_autocast_max_abs_diff'] = _max_diff(half, ref_out)
            entry['ok'] = entry['ok'] and entry['fp16_autocast_max_abs_diff'] < 0.05 * scale
        results[name] = entry
    boxes = torch.rand(500, 2) * 200
    boxes = torch.cat([boxes, boxes + torch.rand(500, 2) * 60 + 1], dim=1)
    scores = torch.rand(500)
    _, keep_ref = nms(boxes, scores, 0.5)
    _, keep = nms(boxes.to(device), scores.to(device), 0.5)
    results['nms'] = dict(kept=int(keep_ref.numel()),
                          ok=keep.cpu().tolist() == keep_ref.tolist())
    return results


def select_configs(choice: List[str]) -> List[Path]:
    """'families': the representative demo config of every model family
    (``mmplug_agg.testing.families``, the ones the ONNX tests export); 'all': every
    demo config; else the named configs."""
    demos = sorted((REPO / 'configs').glob('*_demo.py'))
    if choice == ['all']:
        return demos
    if choice == ['families']:
        sys.path.insert(0, str(REPO))
        from mmplug_agg.testing.families import representatives
        return [REPO / 'configs' / f'{stem}.py' for stem in representatives().values()]
    return [REPO / 'configs' / (name if name.endswith('.py') else f'{name}.py')
            for name in choice]


def amp_step(path: Path, device: str, shape) -> Dict:
    from mmengine.config import Config
    from mmengine.registry import OPTIM_WRAPPERS, init_default_scope

    import mmplug_agg  # noqa: F401
    from mmplug_agg.registry import MODEL_REGISTRIES
    from mmplug_agg.testing.synthetic import make_batch_for_model

    torch.manual_seed(0)
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    model = MODEL_REGISTRIES[cfg.default_scope].build(cfg.model)
    model.init_weights()
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    if device.startswith('cuda'):
        wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic', dtype='float16')
    else:
        wrapper = dict(type='CPUAmpOptimWrapper', dtype='bfloat16')
    optim_wrapper = OPTIM_WRAPPERS.build(dict(wrapper, optimizer=optimizer))
    batch = make_batch_for_model(model, cfg.default_scope, shape, batch_size=2)
    start = time.perf_counter()
    log_vars = model.train_step(batch, optim_wrapper)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
    losses = {k: float(v) for k, v in log_vars.items()}
    entry = dict(config=path.stem, wrapper=wrapper['type'], dtype=wrapper['dtype'],
                 step_seconds=round(time.perf_counter() - start, 3), losses=losses,
                 ok=all(torch.isfinite(torch.tensor(v)) for v in losses.values()))
    scaler = getattr(optim_wrapper, 'loss_scaler', None)
    if scaler is not None and scaler.is_enabled():
        entry['loss_scale'] = float(scaler.get_scale())
    return entry


def check_amp(device: str, configs: List[str], shape) -> Dict:
    results = {}
    for path in select_configs(configs):
        # SAC pads its switch input by 2 (reflect) at stride 32: maps need >= 3 pixels.
        size = [max(s, 96) for s in shape] if 'detectors' in path.stem else shape
        try:
            results[path.stem] = amp_step(path, device, size)
        except Exception:  # noqa: BLE001  (one broken config must not hide the others)
            results[path.stem] = dict(config=path.stem, ok=False,
                                      error=traceback.format_exc(limit=4))
        print(f"amp {path.stem}: {'ok' if results[path.stem]['ok'] else 'FAILED'}", flush=True)
    return results


def run_benchmarks(device: str, out: Path, only: List[str]) -> Dict:
    import importlib.util
    import shutil
    import tempfile

    spec = importlib.util.spec_from_file_location('run_all', REPO / 'benchmarks' / 'run_all.py')
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    scratch = Path(tempfile.mkdtemp(prefix='gpu_check_bench_'))
    # run_all writes under the repository; the check keeps the checkout as it is.
    run_all.write_outputs.__defaults__ = (scratch, )
    argv = ['run_all.py', '--device', device, '--profile', 'quick', '--no-docs']
    if only:
        argv += ['--only', *only]
    saved, sys.argv = sys.argv, argv
    try:
        code = run_all.main()
    finally:
        sys.argv = saved
    for written in [*scratch.glob('benchmarks/results/*.json'),
                    *scratch.glob('docs/diagrams/*.png')]:
        name = written.name
        name = name if name.startswith('benchmarks') else f'benchmarks_{name}'
        shutil.copy(written, out / name)
    report = json.loads(next(scratch.glob('benchmarks/results/*.json')).read_text())
    return dict(ok=code == 0, seconds=report['seconds'],
                benchmarks={e['name']: e['status'] for e in report['benchmarks']})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('step', choices=('ops', 'amp', 'bench'))
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--configs', nargs='+', default=['families'],
                        help="'families' (one demo config each), 'all', or config names")
    parser.add_argument('--shape', type=int, nargs=2, default=(128, 160))
    parser.add_argument('--only', nargs='+', default=None, help='benchmarks to run')
    args = parser.parse_args()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('error: --device cuda but torch sees no GPU; rehearse with --device cpu',
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == 'ops':
        result = check_ops(args.device)
        ok = all(entry['ok'] for entry in result.values())
    elif args.step == 'amp':
        result = check_amp(args.device, args.configs, tuple(args.shape))
        ok = all(entry['ok'] for entry in result.values())
    else:
        result = run_benchmarks(args.device, args.out, args.only)
        ok = result['ok']
    (args.out / f'{args.step}.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
