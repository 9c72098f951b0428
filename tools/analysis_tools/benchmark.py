"""Time inference and training steps of a detector or segmentor on synthetic data.

mmdet's and mmseg's benchmark tools time inference over a real dataset and
checkpoint. This one needs neither: it answers "how fast is this architecture,
and how much memory does it take" for any mmdet or mmseg config (the config's
``default_scope`` picks the toolbox), on random images with random ground truth
shaped like the dataloaders' output.

* inference: ``data_preprocessor`` then ``forward(mode='predict')`` under
  ``torch.no_grad()``, as ``model.test_step`` runs it in the test loop;
* train: ``data_preprocessor``, ``forward(mode='loss')``, ``model.parse_losses``,
  backward and an SGD step, as ``model.train_step`` runs it in the train loop.

Timings are wall-clock per iteration (CUDA is synchronised before each reading),
after ``--warmup`` untimed iterations. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA; on the CPU it is how far the
process's peak resident set size (``resource.getrusage``'s ``ru_maxrss``, POSIX
only) rose during the mode, which is 0 when the mode stayed below an earlier peak.

Example:
    python tools/analysis_tools/benchmark.py CONFIG --shape 800 1333 --batch-size 2
"""
import argparse
import resource
import statistics
import sys
import time
from typing import Callable, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from torch import nn

import mmplug_agg  # noqa: F401  (registers our modules into mmdet's and mmseg's registries)
from mmplug_agg.testing.synthetic import make_batch_for_model
from mmplug_agg.utils.launch import UserFacingError, build_model, load_config, run_cli

MODES = ('inference', 'train')
# Small enough that random targets do not make the weights diverge within a run.
LEARNING_RATE = 1e-3


def _autocast(model: nn.Module, amp: bool) -> torch.autocast:
    """fp16 autocast, as mmengine's ``AmpOptimWrapper`` runs training."""
    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type=device_type, dtype=torch.float16, enabled=amp)


def inference_step(model: nn.Module, batch: dict, amp: bool = False) -> Tuple[int, ...]:
    """One test step; returns the network input's shape (after padding)."""
    with torch.no_grad(), _autocast(model, amp):
        data = model.data_preprocessor(batch, False)
        model(**data, mode='predict')
    return tuple(data['inputs'].shape)


def train_step(model: nn.Module,
               batch: dict,
               optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler,
               amp: bool = False) -> Tuple[int, ...]:
    """One training step; returns the network input's shape (after padding).

    The loss is summed by ``model.parse_losses`` (every loss term whose name
    contains 'loss'), the same sum the runner back-propagates.
    """
    optimizer.zero_grad(set_to_none=True)
    with _autocast(model, amp):
        data = model.data_preprocessor(batch, True)
        losses = model(**data, mode='loss')
    loss, _ = model.parse_losses(losses)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return tuple(data['inputs'].shape)


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _peak_rss_bytes() -> int:
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    scale = 1 if sys.platform == 'darwin' else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _time_mode(step: Callable[[], Tuple[int, ...]], num_iters: int, warmup: int, batch_size: int,
               device: torch.device) -> dict:
    """Run ``step`` warmup + num_iters times; time the last num_iters."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _peak_rss_bytes()
    times_ms = []
    for index in range(warmup + num_iters):
        _synchronize(device)
        start = time.perf_counter()
        input_shape = step()
        _synchronize(device)
        if index >= warmup:
            times_ms.append((time.perf_counter() - start) * 1000)
    if device.type == 'cuda':
        peak_bytes = torch.cuda.max_memory_allocated(device)
    else:
        peak_bytes = _peak_rss_bytes() - rss_before
    mean_ms = statistics.fmean(times_ms)
    return dict(mean_ms=mean_ms,
                median_ms=statistics.median(times_ms),
                images_per_s=batch_size * 1000 / mean_ms,
                peak_memory_mib=peak_bytes / 2**20,
                input_shape=input_shape,
                times_ms=times_ms)


def run_benchmark(cfg: Config,
                  shape: Optional[Sequence[int]] = None,
                  batch_size: int = 2,
                  num_iters: int = 20,
                  warmup: int = 5,
                  mode: str = 'both',
                  device: str = 'cpu',
                  amp: bool = False) -> dict:
    """Time inference and/or train steps of ``cfg.model`` on one synthetic batch.

    The same batch is fed at every iteration, so no data generation is timed:
    the data preprocessor copies the samples onto the device before anything
    writes to them, so no step sees another step's outputs. Inference runs
    before training, so it uses the initial weights.

    Args:
        cfg: A loaded config whose ``default_scope`` is 'mmdet' or 'mmseg'.
        shape: Image size (H, W), a single side for a square image, or None for
            the toolbox's default (1280x800 for mmdet, 512x1024 for mmseg).
        batch_size: Images per step.
        num_iters: Timed iterations per mode.
        warmup: Untimed iterations before them (allocator, cuDNN autotuning).
        mode: 'inference', 'train' or 'both'.
        device: Where the model runs, e.g. 'cpu', 'cuda' or 'cuda:1'.
        amp: Run under fp16 autocast, training with dynamic loss scaling.
            CUDA only, like mmengine's ``AmpOptimWrapper``; on the CPU mmcv's
            ops (NMS, RoIAlign) take no half-precision tensors.

    Returns:
        dict with the settings (``model``, ``toolbox``, ``device``, ``shape``,
        ``batch_size``, ``num_iters``, ``warmup``, ``amp``, ``memory_metric``)
        and, per mode run, a dict with ``mean_ms``, ``median_ms``,
        ``images_per_s``, ``peak_memory_mib``, ``input_shape`` and ``times_ms``.
    """
    if mode not in (*MODES, 'both'):
        raise ValueError(f"mode must be 'inference', 'train' or 'both', got {mode!r}")
    if num_iters < 1 or warmup < 0 or batch_size < 1:
        raise ValueError('num_iters and batch_size must be >= 1 and warmup >= 0')
    torch_device = torch.device(device)
    if amp and torch_device.type != 'cuda':
        raise ValueError('amp needs a CUDA device')
    model, toolbox = build_model(cfg, device)
    batch = make_batch_for_model(model, toolbox, shape, batch_size)
    result = dict(
        model=type(model).__name__,
        toolbox=toolbox,
        device=str(torch_device),
        shape=tuple(batch['inputs'][0].shape[-2:]),
        batch_size=batch_size,
        num_iters=num_iters,
        warmup=warmup,
        amp=amp,
        memory_metric=('torch.cuda.max_memory_allocated' if torch_device.type == 'cuda' else
                       'rise of the process peak RSS (resource.getrusage ru_maxrss)'))
    if torch_device.type == 'cpu':
        result['cpu_threads'] = torch.get_num_threads()

    if mode in ('inference', 'both'):
        model.eval()
        result['inference'] = _time_mode(lambda: inference_step(model, batch, amp), num_iters,
                                         warmup, batch_size, torch_device)
    if mode in ('train', 'both'):
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                    lr=LEARNING_RATE,
                                    momentum=0.9)
        # Loss scaling keeps fp16 gradients from underflowing; without AMP it is a no-op.
        scaler = torch.amp.GradScaler(torch_device.type, enabled=amp)
        result['train'] = _time_mode(lambda: train_step(model, batch, optimizer, scaler, amp),
                                     num_iters, warmup, batch_size, torch_device)
    return result


def format_report(result: dict) -> str:
    """The printed summary: settings, one row per mode, and what 'memory' means."""
    height, width = result['shape']
    settings = (f"{result['model']} ({result['toolbox']}) on {result['device']}" +
                (f" ({result['cpu_threads']} threads)" if 'cpu_threads' in result else '') +
                f", batch {result['batch_size']} of {height}x{width}, "
                f"{result['num_iters']} timed iterations after {result['warmup']} warm-up, "
                f"AMP {'on' if result['amp'] else 'off'}")
    header = f"{'mode':<10} {'mean ms':>9} {'median ms':>10} {'img/s':>8} {'peak MiB':>9}  input"
    rows = [
        f"{mode:<10} {result[mode]['mean_ms']:9.1f} {result[mode]['median_ms']:10.1f} "
        f"{result[mode]['images_per_s']:8.2f} {result[mode]['peak_memory_mib']:9.0f}  "
        f"{result[mode]['input_shape']}" for mode in MODES if mode in result
    ]
    rule = '=' * len(header)
    return '\n'.join([
        rule, settings, header, *rows, f"peak memory: {result['memory_metric']}",
        "input: the network input, after the data preprocessor's padding", rule
    ])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time inference and training steps of a detector or segmentor '
        'on synthetic data')
    parser.add_argument('config', help='config file path (mmdet or mmseg scope)')
    parser.add_argument('--shape',
                        type=int,
                        nargs='+',
                        help='input image size: H W, or one side for a square image '
                        '(default: 1280 800 for mmdet, 512 1024 for mmseg)')
    parser.add_argument('--batch-size', type=int, default=2, help='images per step')
    parser.add_argument('--num-iters', type=int, default=20, help='timed iterations per mode')
    parser.add_argument('--warmup',
                        type=int,
                        default=5,
                        help='untimed iterations before the timed ones')
    parser.add_argument('--mode', choices=[*MODES, 'both'], default='both', help='what to time')
    parser.add_argument('--device',
                        choices=['cpu', 'cuda'],
                        default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='where to run (default: cuda when available)')
    parser.add_argument('--amp',
                        action='store_true',
                        help='run under fp16 autocast with loss scaling (CUDA only)')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override some settings in the used config, the key-value pair '
                        'in xxx=yyy format will be merged into config file, e.g. '
                        'model.backbone.depth=18 or key="[a,b]" for lists')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W, or a single side for a square image')
    if args.num_iters < 1 or args.batch_size < 1 or args.warmup < 0:
        parser.error('--num-iters and --batch-size must be >= 1, --warmup >= 0')
    return args


def main() -> None:
    args = parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise UserFacingError('--device cuda: no CUDA device is visible to torch')
    if args.amp and args.device != 'cuda':
        raise UserFacingError('--amp needs --device cuda: mmcv ops such as NMS and RoIAlign '
                              'take no half-precision tensors on the CPU')
    cfg = load_config(args.config, args.cfg_options)
    result = run_benchmark(cfg, args.shape, args.batch_size, args.num_iters, args.warmup, args.mode,
                           args.device, args.amp)
    print(format_report(result))


if __name__ == '__main__':
    run_cli(main)
