"""Count the FLOPs and parameters of a detector or segmentor from its config alone.

mmdet's and mmseg's own ``get_flops`` tools differ (mmdet reads images through the
val dataloader, mmseg feeds a bare tensor) and neither knows the other toolbox. This
tool serves both: the config's ``default_scope`` picks the toolbox, and a synthetic
image of the requested size replaces the dataset, so any config can be measured
without data on disk or downloaded weights.

The image goes through the model's data preprocessor, as a real batch would, so the
counted input carries the preprocessor's padding; the count covers the tensor
forward (``mode='tensor'``): backbone, neck and heads, without the preprocessing and
without post-processing such as box decoding or rescaling.

Example:
    python tools/analysis_tools/get_flops.py CONFIG --shape 1280 800

``--table docs/flops.md`` measures every non-demo config of ``configs/`` (or the
configs given) at the toolbox's default size, or at the size a paper measured,
and writes a markdown table with the paper's parameters and FLOPs beside ours
where the paper gives them.
"""
import argparse
import datetime
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from mmcv.cnn.bricks.conv_ws import ConvAWS2d
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config, DictAction
from torch import nn

import mmplug_agg  # noqa: F401  (registers our modules into mmdet's and mmseg's registries)
from mmplug_agg.testing.synthetic import make_batch_for_model
from mmplug_agg.utils.launch import build_model, load_config, run_cli


class TensorForward(nn.Module):
    """Expose ``model(inputs, data_samples, mode='tensor')`` as ``forward(inputs)``.

    mmengine's FLOP counter traces ``forward`` with tensor arguments only; detectors
    also need the data samples (image sizes for the RPN's proposals), so they are
    bound here. The model is a submodule, so parameter counts stay the model's.
    """

    def __init__(self, model: nn.Module, data_samples: list) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model(inputs, self.data_samples, mode='tensor')


def measure_complexity(model: nn.Module,
                       toolbox: str,
                       shape: Optional[Sequence[int]] = None) -> dict:
    """FLOPs and parameters of a built model on one synthetic image.

    FLOPs follow mmengine's (fvcore's) convention: one fused multiply-add counts
    as one FLOP. Operators the counter does not know (it logs them) add nothing.
    For two-stage detectors the RoI head's share depends on how many proposals
    survive NMS on the synthetic image, as it does on real images. The model is
    switched to eval mode: counting must not move BatchNorm statistics.

    Returns:
        dict with ``flops`` and ``params`` (ints), ``module_params`` (parameters
        of each top-level submodule that has any, e.g. backbone, neck, heads),
        ``input_shape`` (the network input, after the preprocessor's padding),
        ``image_shape`` (the synthetic image's (H, W)), ``model`` (class name)
        and ``toolbox``.
    """
    model.eval()
    batch = make_batch_for_model(model, toolbox, shape, batch_size=1)
    with torch.no_grad():
        data = model.data_preprocessor(batch, False)
    inputs = data['inputs']
    # mmdet's preprocessor records the padded batch size; mmseg's does not. Heads
    # written for both toolboxes may read it, so every sample carries it.
    for data_sample in data['data_samples']:
        data_sample.set_metainfo(dict(batch_input_shape=tuple(inputs.shape[-2:])))
    with warnings.catch_warnings():
        # Tracing turns shape-dependent Python values into constants; that is fine
        # for a single count, so the tracer's warnings about it are noise here.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        complexity = get_model_complexity_info(TensorForward(model, data['data_samples']),
                                               inputs=(inputs, ),
                                               show_table=False,
                                               show_arch=False)
    module_params = {
        name: sum(p.numel() for p in child.parameters())
        for name, child in model.named_children()
    }
    return dict(flops=complexity['flops'],
                params=complexity['params'],
                module_params={
                    name: n
                    for name, n in module_params.items() if n
                },
                input_shape=tuple(inputs.shape),
                image_shape=tuple(batch['inputs'][0].shape[-2:]),
                model=type(model).__name__,
                toolbox=toolbox)


def compute_complexity(cfg: Config, shape: Optional[Sequence[int]] = None) -> dict:
    """Build the model of ``cfg`` and measure it; see :func:`measure_complexity`.

    Args:
        cfg: A loaded config whose ``default_scope`` is 'mmdet' or 'mmseg'.
        shape: (H, W), a single side for a square image, or None for the
            toolbox's default (1280x800 for mmdet, 512x1024 for mmseg).
    """
    model, toolbox = build_model(cfg)
    _calibrate_weight_standardisation(model)
    return measure_complexity(model, toolbox, shape)


def _calibrate_weight_standardisation(model: nn.Module) -> None:
    """Give random weight-standardised convs the scale they have after loading weights.

    ``ConvAWS2d`` (DetectoRS's backbones, SAC) standardises each filter to unit
    variance, whatever the init, and rescales by buffers that loading a checkpoint
    sets to the loaded filter's statistics. With random weights and BN in eval mode
    (identity statistics), the activations of a deep ConvAWS backbone then grow by
    about sqrt(fan_in) per conv and overflow, the RPN keeps no proposal and the RoI
    heads count nothing (Cascade R-CNN fails outright). Setting the buffers as loading would
    makes each conv compute with its random weights as they are.
    """
    for module in model.modules():
        if isinstance(module, ConvAWS2d):
            weight = module.weight.detach().flatten(1)
            module.weight_beta.copy_(weight.mean(dim=1).view_as(module.weight_beta))
            module.weight_gamma.copy_(
                torch.sqrt(weight.var(dim=1) + 1e-5).view_as(module.weight_gamma))


def format_report(result: dict) -> str:
    """The printed summary: input, totals and the per-module parameter split."""
    height, width = result['image_shape']
    lines = [
        f"Model:        {result['model']} ({result['toolbox']})",
        f"Input shape:  {result['input_shape']}",
    ]
    if tuple(result['input_shape'][-2:]) != (height, width):
        lines.append(f'              (image {height}x{width}, padded by the data preprocessor)')
    lines += [
        f"FLOPs:        {result['flops'] / 1e9:.2f} G  (a multiply-add counts as one FLOP)",
        f"Params:       {result['params'] / 1e6:.2f} M",
        'Params by module:',
    ]
    width_name = max(len(name) for name in result['module_params'])
    lines += [
        f'  {name:<{width_name}}  {count / 1e6:8.3f} M'
        for name, count in result['module_params'].items()
    ]
    rule = '=' * 40
    return '\n'.join([rule, *lines, rule])


# Paper numbers to check against: config -> (image size the paper measured at,
# parameters, FLOPs as multiply-adds, source). Only whole-model numbers that the
# papers state for the same architecture are listed.
PAPER_COMPLEXITY: Dict[str, tuple] = {
    'efficientdet_d0_bifpn_coco': ((512, 512), 3.9e6, 2.5e9, 'EfficientDet, Table 2'),
    'efficientdet_d3_bifpn_coco': ((896, 896), 12.0e6, 25e9, 'EfficientDet, Table 2'),
    'hrnetv2_w48_cityscapes_512x1024_80k': ((1024, 2048), 65.9e6, 696.2e9,
                                            'HRNetV2, Cityscapes val table'),
}


def table_rows(config_paths: List[Path]) -> List[str]:
    """One markdown row per config (a failure becomes a row that says why)."""
    rows = []
    for path in config_paths:
        paper = PAPER_COMPLEXITY.get(path.stem)
        shape = paper[0] if paper else None
        try:
            result = compute_complexity(load_config(str(path)), shape)
        except Exception as error:  # noqa: BLE001  (one config must not stop the table)
            rows.append(f'| `{path.stem}` | | | | | failed: {type(error).__name__}: '
                        f'{str(error).splitlines()[0][:120]} |')
            continue
        height, width = result['image_shape']
        backbone = result['module_params'].get('backbone', 0)
        check = ''
        if paper:
            check = (f'{paper[1] / 1e6:.1f} M / {paper[2] / 1e9:.1f} G '
                     f'({paper[3]}); ours / paper: params '
                     f"{result['params'] / paper[1]:.2f}x, FLOPs {result['flops'] / paper[2]:.2f}x")
        rows.append(f"| `{path.stem}` | {result['model']} | {height}x{width} | "
                    f"{result['params'] / 1e6:.2f} | {backbone / 1e6:.2f} | "
                    f"{result['flops'] / 1e9:.1f} | {check} |")
        print(rows[-1], flush=True)
    return rows


def write_table(out: Path, config_paths: List[Path]) -> None:
    lines = [
        '# Parameters and FLOPs of every config',
        '',
        'Written by `python tools/analysis_tools/get_flops.py --table docs/flops.md` '
        f'({datetime.date.today().isoformat()}). One synthetic image per config, at '
        "mmdet's 1280x800 for detectors and mmseg's 512x1024 for segmentors unless a "
        'paper measured at another size; FLOPs count a multiply-add as one (mmengine\'s '
        'counter) over the tensor forward (backbone, neck, heads; two-stage detectors with '
        'the proposals that survive on the synthetic image), so post-processing is not '
        'included. Operators the counter does not know (e.g. deformable convolution, '
        'RoIAlign) count zero.',
        '',
        '| config | model | image | params (M) | backbone params (M) | GFLOPs | paper |',
        '| --- | --- | --- | ---: | ---: | ---: | --- |',
        *table_rows(config_paths),
        '',
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text('\n'.join(lines))
    print(f'wrote {out}')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the FLOPs and parameters of a detector or segmentor')
    parser.add_argument('config', nargs='*',
                        help='config file path (mmdet or mmseg scope); with --table, any '
                        'number of them (default: every non-demo config of configs/)')
    parser.add_argument('--table', type=Path, metavar='OUT.md',
                        help='measure the configs and write a markdown table to OUT.md')
    parser.add_argument('--shape',
                        type=int,
                        nargs='+',
                        help='input image size: H W, or one side for a square image '
                        '(default: 1280 800 for mmdet, 512 1024 for mmseg)')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override some settings in the used config, the key-value pair '
                        'in xxx=yyy format will be merged into config file, e.g. '
                        'model.backbone.depth=18 or key="[a,b]" for lists')
    args = parser.parse_args()
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W, or a single side for a square image')
    if args.table is None and len(args.config) != 1:
        parser.error('give one config (or --table OUT.md for a table of several)')
    return args


def main() -> None:
    args = parse_args()
    if args.table is not None:
        config_dir = Path(__file__).resolve().parents[2] / 'configs'
        paths = [Path(c) for c in args.config] or sorted(
            p for p in config_dir.glob('*.py') if not p.stem.endswith('_demo'))
        write_table(args.table, paths)
        return
    cfg = load_config(args.config[0], args.cfg_options)
    print(format_report(compute_complexity(cfg, args.shape)))


if __name__ == '__main__':
    run_cli(main)
