"""Export an mmdet detector or mmseg segmentor to ONNX and check it with onnxruntime.

Typical use, from a built model (random or trained weights)::

    from mmplug_agg.deployment import export_onnx, verify_onnx
    graphs = export_onnx(model, (320, 480), 'model.onnx', dynamic_shape=True)
    for parity in verify_onnx(graphs, shapes=[(320, 480), (256, 352)]):
        print(parity)

:func:`export_onnx` exports a copy of the model prepared for ONNX (eval mode,
weight standardisation folded, RoI layers swapped for their ONNX forms; see
:mod:`~mmplug_agg.deployment.folding` and :mod:`~mmplug_agg.deployment.roi`);
the model passed in is not changed. :func:`verify_onnx` runs each exported file
with onnxruntime and compares it with the *original* model in PyTorch, so the
reported differences include every substitution made for export.
"""
import copy
import inspect
import json
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from mmplug_agg.deployment.folding import NotFoldable, fold_weight_standardisation
from mmplug_agg.deployment.graphs import (DenseDetectorGraph, RoIStageGraph, SegmentorGraph,
                                          is_segmentor, is_two_stage)
from mmplug_agg.deployment.roi import prepare_roi_layers
from mmplug_agg.utils.launch import UserFacingError

EXPORTERS = ('torchscript', 'dynamo')
# ONNX RoiAlign's half_pixel mode (mmcv's aligned=True) needs opset 16.
MIN_OPSET = 16
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}
# Differences are divided by max(1, max |reference|): absolute for activations up
# to 1, relative to the output's largest magnitude above that.
DEFAULT_TOLERANCE = 1e-4
NUM_TEST_ROIS = 32


class UnsupportedExport(UserFacingError):
    """The model (or the requested export) has a part that cannot go to ONNX."""


@dataclass
class ExportedGraph:
    """One exported ONNX file and what is needed to check it.

    Attributes:
        path: The ONNX file.
        kind: 'segmentor', 'dense' (image -> dense head) or 'roi' (RoI stage).
        input_names / output_names: Names in the ONNX file.
        dynamic: Whether height and width (and the RoI count) are dynamic axes.
        reference: The same graph around the original model (PyTorch reference).
        make_inputs: (H, W) -> example inputs of the graph for an image of that size.
        shape: The (H, W) the graph was traced at.
        divisor: The multiple the model pads its inputs to (see :func:`pad_divisor`).
    """
    path: str
    kind: str
    input_names: List[str]
    output_names: List[str]
    dynamic: bool
    reference: nn.Module
    make_inputs: Callable[[Tuple[int, int]], Tuple[Tensor, ...]]
    shape: Tuple[int, int]
    divisor: int = 1


@dataclass
class Parity:
    """onnxruntime against PyTorch for one graph at one input size."""
    path: str
    shape: Tuple[int, int]
    max_abs: float
    max_scaled: float
    tolerance: float
    per_output: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.max_scaled <= self.tolerance

    def __str__(self) -> str:
        worst = max(self.per_output, key=lambda name: self.per_output[name][1])
        return (f'{osp.basename(self.path)} at {self.shape[0]}x{self.shape[1]}: max abs diff '
                f'{self.max_abs:.3g}, max diff / max(1, |ref|) {self.max_scaled:.3g} '
                f"(worst output '{worst}') -> {'ok' if self.ok else 'FAILED'} "
                f'(tolerance {self.tolerance:g})')


def check_exportable(model: nn.Module, dynamic_shape: bool = False) -> None:
    """Raise :class:`UnsupportedExport` for models with parts ONNX cannot take."""
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and hasattr(backbone, 'adaptors') and getattr(
            backbone, 'learnable', False):
        raise UnsupportedExport(
            f'{type(backbone).__name__} has learnable shape adaptors (their sizes come from '
            'alpha at run time); freeze the learned shape first with '
            'tools/misc/export_shape_adaptor.py CONFIG CHECKPOINT --out FROZEN.py and export '
            'the frozen config')
    if backbone is not None and hasattr(backbone, 'adaptors') and dynamic_shape:
        raise UnsupportedExport(
            f'{type(backbone).__name__} plans its feature sizes in Python from the input '
            'size, so its graph holds the sizes of one input: export it without '
            '--dynamic-shape, at the --shape it will run at')


def prepare_for_export(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with ONNX-ready layers (folded WS, RoI layers)."""
    model = copy.deepcopy(model).eval()
    try:
        fold_weight_standardisation(model)
    except NotFoldable as err:
        raise UnsupportedExport(str(err)) from None
    prepare_roi_layers(model)
    return model


def test_rois(image_shape: Tuple[int, int], num: int = NUM_TEST_ROIS, seed: int = 0) -> Tensor:
    """``num`` RoIs (batch index 0) from 1/16 to the whole image: every pyramid level."""
    height, width = image_shape
    gen = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1.2, 0, num).unsqueeze(1)  # side relative to the image
    size = scale * torch.tensor([[width, height]], dtype=torch.float32)
    size = size * (0.6 + 0.4 * torch.rand(num, 2, generator=gen))
    top_left = torch.rand(num, 2, generator=gen) * (torch.tensor([[width, height]]) - size)
    boxes = torch.cat([top_left, top_left + size], dim=1)
    return torch.cat([torch.zeros(num, 1), boxes], dim=1)


def _image(shape: Tuple[int, int], batch_size: int = 1, seed: int = 0) -> Tensor:
    # The network input is normalised: standard normal values are its scale.
    return torch.randn(batch_size, 3, *shape, generator=torch.Generator().manual_seed(seed))


def _preprocessing_metadata(model: nn.Module, kind: str) -> Dict[str, str]:
    meta = {'mmplug_agg.graph': kind}
    preprocessor = getattr(model, 'data_preprocessor', None)
    if preprocessor is None:
        return meta
    if getattr(preprocessor, '_enable_normalize', False):
        meta['mean'] = json.dumps([round(float(v), 6) for v in preprocessor.mean.flatten()])
        meta['std'] = json.dumps([round(float(v), 6) for v in preprocessor.std.flatten()])
    meta['bgr_to_rgb'] = json.dumps(bool(getattr(preprocessor, '_channel_conversion', False)))
    divisor = getattr(preprocessor, 'pad_size_divisor', None)
    if divisor is None and getattr(preprocessor, 'size_divisor', None) is not None:
        divisor = preprocessor.size_divisor
    if divisor:
        meta['pad_size_divisor'] = str(divisor)
    return meta


def _torch_export(module: nn.Module, inputs: Tuple[Tensor, ...], path: str,
                  input_names: List[str], output_names: List[str],
                  dynamic_axes: Dict[str, Dict[int, str]], opset: int, exporter: str) -> None:
    with warnings.catch_warnings():
        # Tracing turns Python-side sizes into constants and says so for every one; the
        # verification at a second size is what tells whether that mattered.
        warnings.simplefilter('ignore')
        if exporter == 'torchscript':
            torch.onnx.export(module, inputs, path, dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes or None, do_constant_folding=True)
            return
        dims = {}
        dynamic_shapes = None
        if dynamic_axes:
            dynamic_shapes = []
            for name in input_names:
                axes = dynamic_axes.get(name, {})
                spec = {}
                for axis, dim_name in axes.items():
                    if dim_name not in dims:
                        dims[dim_name] = torch.export.Dim.DYNAMIC
                    spec[axis] = dims[dim_name]
                dynamic_shapes.append(spec or None)
            dynamic_shapes = tuple(dynamic_shapes)
            params = list(inspect.signature(module.forward).parameters.values())
            if len(params) == 1 and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
                # torch.export sees ``*inputs`` as one argument holding a tuple.
                dynamic_shapes = {params[0].name: dynamic_shapes}
        program = torch.onnx.export(module, inputs, dynamo=True, opset_version=opset,
                                    input_names=input_names, output_names=output_names,
                                    dynamic_shapes=dynamic_shapes, verbose=False,
                                    report=False)
        program.save(path)


def _add_metadata(path: str, metadata: Dict[str, str]) -> None:
    import onnx
    proto = onnx.load(path)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, path)


def roi_path(out: str) -> str:
    """Where the RoI stage of a two-stage detector goes: ``model.onnx`` -> ``model_roi.onnx``."""
    root, ext = osp.splitext(out)
    return f'{root}_roi{ext or ".onnx"}'


def export_onnx(model: nn.Module,
                shape: Sequence[int],
                out: str,
                *,
                dynamic_shape: bool = False,
                opset: Optional[int] = None,
                exporter: str = 'torchscript',
                roi_stage: bool = True,
                batch_size: int = 1) -> List[ExportedGraph]:
    """Export ``model`` (an mmdet detector or mmseg segmentor) to ONNX.

    Args:
        model: A built model; it is copied, not changed.
        shape: (H, W) of the network input to trace with.
        out: The ONNX file of the image graph. For two-stage detectors the RoI
            stage goes to :func:`roi_path` of it.
        dynamic_shape: Make height and width dynamic axes (the RoI count is
            always dynamic).
        opset: ONNX opset; defaults to 17 for the TorchScript exporter and 18
            for the dynamo exporter. At least 16 (RoiAlign's half-pixel mode).
        exporter: 'torchscript' (``torch.onnx.export(dynamo=False)``) or
            'dynamo'.
        roi_stage: Also export the RoI stage of a two-stage detector.
        batch_size: Images per traced batch (the batch axis is static).

    Returns:
        The exported graphs, image graph first.

    Raises:
        UnsupportedExport: The model has a part ONNX cannot take (learnable
            Shape Adaptor, deformable SAC, ...), or an argument is invalid.
    """
    if exporter not in EXPORTERS:
        raise UnsupportedExport(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    opset = DEFAULT_OPSET[exporter] if opset is None else int(opset)
    if opset < MIN_OPSET:
        raise UnsupportedExport(f'opset must be at least {MIN_OPSET} (ONNX RoiAlign with '
                                f"half-pixel coordinates, mmcv's aligned=True), got {opset}")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise UnsupportedExport(f'shape must be (height, width) with positive sides, got {shape}')
    check_exportable(model, dynamic_shape)
    reference_model = copy.deepcopy(model).eval()
    export_model = prepare_for_export(model)

    if is_segmentor(model):
        graph, reference = SegmentorGraph(export_model), SegmentorGraph(reference_model)
        kind = 'segmentor'
    else:
        graph, reference = DenseDetectorGraph(export_model), DenseDetectorGraph(reference_model)
        kind = 'dense'

    def image_inputs(size: Tuple[int, int]) -> Tuple[Tensor, ...]:
        return (_image(size, batch_size), )

    inputs = image_inputs(shape)
    with torch.no_grad():
        reference(*inputs)  # output names of detectors are known after one forward
    output_names = reference.output_names
    # The batch axis stays static: mmdet's heads reshape by batch in Python.
    image_axes = {2: 'height', 3: 'width'} if dynamic_shape else {}
    dynamic_axes = {'image': image_axes}
    for name in output_names:
        if dynamic_shape:
            dynamic_axes[name] = {2: f'{name}_height', 3: f'{name}_width'}
    _torch_export(graph, inputs, out, ['image'], output_names,
                  dynamic_axes if dynamic_shape else {}, opset, exporter)
    _add_metadata(out, _preprocessing_metadata(model, kind))
    graphs = [ExportedGraph(out, kind, ['image'], output_names, dynamic_shape, reference,
                            image_inputs, shape, pad_divisor(model))]

    if roi_stage and kind == 'dense' and is_two_stage(model):
        graphs.append(_export_roi_stage(model, reference_model, export_model, reference, shape,
                                        batch_size, roi_path(out), dynamic_shape, opset,
                                        exporter))
    return graphs


def _export_roi_stage(model, reference_model, export_model, dense_reference, shape, batch_size,
                      path, dynamic_shape, opset, exporter) -> ExportedGraph:
    try:
        graph, reference = RoIStageGraph(export_model), RoIStageGraph(reference_model)
    except ValueError as err:
        raise UnsupportedExport(str(err)) from None
    num_feats = graph.num_feats

    def roi_inputs(size: Tuple[int, int]) -> Tuple[Tensor, ...]:
        with torch.no_grad():
            outputs = dense_reference(*(_image(size, batch_size), ))
        num_pyramid = sum(name.startswith('feat_') for name in dense_reference.output_names)
        feats = outputs[len(outputs) - num_pyramid:]
        inputs = tuple(feats[:num_feats]) + (test_rois(size), )
        if graph.cascade:
            inputs += (torch.tensor(size, dtype=torch.int64), )
        return inputs

    inputs = roi_inputs(shape)
    dynamic_axes = {'rois': {0: 'num_rois'}}
    for name in graph.output_names:
        dynamic_axes[name] = {0: 'num_rois'}
    if dynamic_shape:
        for level in range(num_feats):
            dynamic_axes[f'feat_{level}'] = {2: f'feat_{level}_height', 3: f'feat_{level}_width'}
    _torch_export(graph, inputs, path, graph.input_names, graph.output_names, dynamic_axes,
                  opset, exporter)
    _add_metadata(path, _preprocessing_metadata(model, 'roi'))
    return ExportedGraph(path, 'roi', graph.input_names, graph.output_names, dynamic_shape,
                         reference, roi_inputs, shape, pad_divisor(model))


def verify_onnx(graphs: Union[ExportedGraph, Sequence[ExportedGraph]],
                shapes: Optional[Sequence[Sequence[int]]] = None,
                tolerance: float = DEFAULT_TOLERANCE) -> List[Parity]:
    """Run every graph with onnxruntime and compare it with PyTorch.

    Args:
        graphs: What :func:`export_onnx` returned (or one of its items).
        shapes: Image sizes (H, W) to check; defaults to the traced size, plus
            one more size for graphs with dynamic axes. A graph without dynamic
            axes is checked at its traced size only.
        tolerance: Bound on ``max |ort - torch| / max(1, max |torch|)`` per output.

    Returns:
        One :class:`Parity` per graph and size (``ok`` tells whether it passed).
    """
    import onnxruntime as ort
    if isinstance(graphs, ExportedGraph):
        graphs = [graphs]
    results = []
    for graph in graphs:
        sizes = [tuple(s) for s in shapes] if shapes else [graph.shape]
        if not shapes and graph.dynamic:
            sizes.append(second_shape(graph.shape, graph.divisor))
        if not graph.dynamic:
            sizes = [graph.shape]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(graph.path, options, providers=['CPUExecutionProvider'])
        for size in sizes:
            inputs = graph.make_inputs(size)
            with torch.no_grad():
                expected = graph.reference(*inputs)
            if isinstance(expected, Tensor):
                expected = (expected, )
            feed = {name: tensor.numpy() for name, tensor in zip(graph.input_names, inputs)}
            actual = session.run(graph.output_names, feed)
            per_output = {}
            for name, ref, got in zip(graph.output_names, expected, actual):
                got = torch.from_numpy(got)
                if tuple(got.shape) != tuple(ref.shape):
                    per_output[name] = (float('inf'), float('inf'))
                    continue
                diff = float((got.double() - ref.double()).abs().max()) if ref.numel() else 0.0
                scale = max(1.0, float(ref.abs().max()) if ref.numel() else 1.0)
                per_output[name] = (diff, diff / scale)
            results.append(Parity(graph.path, tuple(size),
                                  max(v[0] for v in per_output.values()),
                                  max(v[1] for v in per_output.values()), tolerance, per_output))
    return results


def calibrate_random_batch_norm(model: nn.Module, shape: Sequence[int], seed: int = 0) -> int:
    """Give the BN layers of a randomly initialised model the statistics of one batch.

    Built without a checkpoint, BN layers hold mean 0 and variance 1; in eval mode
    the activations of a deep random network then shrink or grow layer by layer,
    and in some models (EfficientDet's separable convs) every output ends up the
    same for any image, so a parity check would compare constants. One forward in
    training mode on two random images, with cumulative averaging, sets every
    BN's running statistics to that batch's (layers that ``norm_eval`` keeps in
    eval mode keep theirs). For random weights only (an export without a
    checkpoint); the model is left in eval mode. Returns the number of BN layers.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    graph = SegmentorGraph(model) if is_segmentor(model) else DenseDetectorGraph(model)
    model.train()
    with torch.no_grad():
        graph(_image(tuple(shape), batch_size=2, seed=seed + 1))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    return len(norms)


def pad_divisor(model: nn.Module) -> int:
    """The multiple the model's data preprocessor pads network inputs to (1 if none)."""
    preprocessor = getattr(model, 'data_preprocessor', None)
    divisor = getattr(preprocessor, 'pad_size_divisor', None) or getattr(
        preprocessor, 'size_divisor', None)
    return int(divisor) if divisor else 1


def second_shape(shape: Tuple[int, int], divisor: int = 1) -> Tuple[int, int]:
    """Another input size for dynamic-shape checks: smaller, another aspect ratio.

    With ``divisor`` > 1 (the preprocessor pads inputs to a multiple of it, so the
    graph only ever sees such sizes) the sides are multiples of it; otherwise odd.
    """
    height, width = shape
    if divisor > 1:
        other = (max(divisor, (height * 3 // 4) // divisor * divisor),
                 max(divisor, (width * 5 // 6 + divisor - 1) // divisor * divisor))
        return other if other != (height, width) else (height, width + divisor)
    return (max(33, (height * 3) // 4 + 1), max(33, (width * 5) // 6 + 3))
