"""Export a detector or segmentor of an mmdet / mmseg config to ONNX, checked with onnxruntime.

What is exported (see docs/deployment.md): segmentors map the normalised image
to class logits at the image's size; detectors map it to the raw outputs of the
dense head (the RPN head for two-stage detectors, plus the pyramid features), and
the RoI stage of a two-stage detector goes to a second file, ``OUT_roi.onnx``
(pyramid features + RoIs (N, 5) -> class scores, box deltas[, mask logits]).
Box decoding, NMS and the CRF stay outside the graphs.

Example::

    python tools/deployment/pytorch2onnx.py configs/augfpn_faster_rcnn_r50.py \\
        work_dirs/augfpn_faster_rcnn_r50/epoch_12.pth --shape 800 1216 \\
        --dynamic-shape --out augfpn.onnx --verify

Without a checkpoint the model keeps random weights (no pretrained weights are
downloaded): enough to check that a config exports and that onnxruntime agrees.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import DictAction

import mmplug_agg  # noqa: F401  (registers modules, fixes checkpoint loading)
from mmplug_agg.deployment import EXPORTERS, export_onnx, verify_onnx
from mmplug_agg.deployment.folding import (NotFoldable, calibrate_random_weight_standardisation,
                                           check_foldable)
from mmplug_agg.deployment.onnx import (DEFAULT_TOLERANCE, MIN_OPSET, calibrate_random_batch_norm,
                                        check_exportable, pad_divisor, second_shape)
from mmplug_agg.utils.launch import UserFacingError, build_model, load_config, run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a detector or segmentor to ONNX (and check it with onnxruntime)')
    parser.add_argument('config', help='config file (mmdet or mmseg scope)')
    parser.add_argument('checkpoint', nargs='?',
                        help='checkpoint to load (default: random weights, nothing downloaded)')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='network input size to export at (after resizing and padding)')
    parser.add_argument('--out', required=True, help='ONNX file to write (.onnx)')
    parser.add_argument('--dynamic-shape', action='store_true',
                        help='make height and width dynamic axes (verified at a second size)')
    parser.add_argument('--opset', type=int, default=None,
                        help=f'ONNX opset (>= {MIN_OPSET}; default 17 with torchscript, 18 '
                        'with dynamo)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                        help="torch's exporter: 'torchscript' (torch.onnx.export(dynamo=False))"
                        " or 'dynamo'")
    parser.add_argument('--verify', action='store_true',
                        help='run onnxruntime on the same input and print the differences')
    parser.add_argument('--tolerance', type=float, default=DEFAULT_TOLERANCE,
                        help='--verify fails above this max |ort - torch| / max(1, |torch|)')
    parser.add_argument('--no-roi-stage', action='store_true',
                        help='two-stage detectors: export the image graph only')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (e.g. model.backbone.depth=18)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.out.endswith('.onnx'):
        raise UserFacingError(f"--out must name an .onnx file, got '{args.out}'")
    out_dir = osp.dirname(osp.abspath(args.out))
    if not osp.isdir(out_dir):
        raise UserFacingError(f"--out: folder '{out_dir}' does not exist")
    if min(args.shape) < 32:
        raise UserFacingError(f'--shape must be at least 32 x 32 (the backbones downsample by '
                              f'32), got {args.shape[0]} x {args.shape[1]}')
    cfg = load_config(args.config, args.cfg_options)
    # Pretrained backbone weights named in init_cfg are not loaded (nor downloaded): the
    # checkpoint, when given, holds every weight.
    model, _ = build_model(cfg)
    if args.checkpoint:
        if not osp.isfile(args.checkpoint):
            raise UserFacingError(f"checkpoint '{args.checkpoint}' does not exist")
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, args.checkpoint, map_location='cpu')
    # What cannot export is refused before anything runs.
    check_exportable(model, args.dynamic_shape)
    try:
        check_foldable(model)
    except NotFoldable as err:
        raise UserFacingError(str(err)) from None
    if not args.checkpoint:
        # Random weights: finite ConvAWS outputs and BN statistics that keep activations
        # input-dependent, so that --verify compares something.
        calibrate_random_weight_standardisation(model)
        try:
            calibrate_random_batch_norm(model, args.shape)
        except RuntimeError as err:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise UserFacingError(f'the model does not run at --shape {args.shape[0]} '
                                  f'{args.shape[1]} ({reason}); try a larger --shape') from None
    model.eval()

    graphs = export_onnx(model, args.shape, args.out, dynamic_shape=args.dynamic_shape,
                         opset=args.opset, exporter=args.exporter,
                         roi_stage=not args.no_roi_stage)
    for graph in graphs:
        axes = 'dynamic height/width' if graph.dynamic else 'fixed size'
        print(f'wrote {graph.path} ({graph.kind}: {", ".join(graph.input_names)} -> '
              f'{", ".join(graph.output_names)}; {axes})')
    if not args.verify:
        return
    # A dynamic graph is checked at a second size too: one the data preprocessor can give.
    shapes = [tuple(args.shape)] + ([second_shape(tuple(args.shape), pad_divisor(model))]
                                     if args.dynamic_shape else [])
    failed = False
    for parity in verify_onnx(graphs, shapes, tolerance=args.tolerance):
        print(f'verify: {parity}')
        failed |= not parity.ok
    if failed:
        print('error: onnxruntime and PyTorch disagree beyond --tolerance (see above)',
              file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    torch.set_grad_enabled(False)
    run_cli(main)
