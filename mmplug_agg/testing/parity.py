"""Helpers for converter parity tests: random weights that exercise every path, comparisons.

A freshly initialised model hides mapping mistakes: BN layers are identities, many
biases and the zero-initialised layers (RFP's feedback convs and gate, DCN offsets) are
zero, so swapping two of them changes nothing. :func:`randomize_` gives every BN random
affine parameters and statistics, every bias and every zero-initialised weight random
values, weight-standardised convs (ConvAWS) random gain and offset buffers, and linear
layers unit gain (so classification scores are spread out and the order of detections is
not decided by rounding).
"""
import contextlib
import sys
from types import ModuleType
from typing import Any, Iterable, Iterator, List, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Randomise BN statistics, biases and all-zero weights of ``model`` in place."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    for module in model.modules():
        if isinstance(module, (_BatchNorm, nn.GroupNorm)):
            n = module.num_features if isinstance(module, _BatchNorm) else module.num_channels
            if module.weight is not None:
                module.weight.copy_(rand(n) * 0.5 + 0.25)
                module.bias.copy_(randn(n) * 0.1)
            if isinstance(module, _BatchNorm) and module.running_mean is not None:
                module.running_mean.copy_(randn(n) * 0.1)
                module.running_var.copy_(rand(n) * 0.5 + 0.75)
            continue
        if isinstance(getattr(module, 'weight_gamma', None), torch.Tensor):
            # Weight-standardised convs (ConvAWS, SAC) keep the scale of their weights in
            # these buffers, which a checkpoint holds; unit gamma would blow activations up.
            flat = module.weight.flatten(1)
            scale = rand(len(flat)) * 0.5 + 0.75
            module.weight_gamma.copy_((flat.std(dim=1) * scale).view_as(module.weight_gamma))
            module.weight_beta.copy_((flat.mean(dim=1) + randn(len(flat)) * 1e-3)
                                     .view_as(module.weight_beta))
        if isinstance(module, nn.Linear):
            module.weight.copy_(randn(*module.weight.shape) / module.in_features**0.5)

        for name, param in module.named_parameters(recurse=False):
            if param.dim() >= 2 and not param.any():
                fan_in = param[0].numel()
                param.copy_(randn(*param.shape) / fan_in**0.5)
            elif name == 'bias' or (param.dim() < 2 and not param.any()):
                param.copy_(randn(*param.shape) * 0.1)
    return model


@torch.no_grad()
def calibrate_bn_(model: nn.Module, run, seed: int = 0) -> nn.Module:
    """Set BN statistics from one training-mode forward (``run(model)``), then jitter them.

    With statistics unrelated to the activations, BN in a deep decoder shrinks the signal
    until its random shifts decide the output and every pixel gets the same class.
    Statistics measured on an input keep activations at unit scale, as in a trained
    model; the jitter keeps a swapped mean or variance visible.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.momentum = 1.0
    was_training = model.training
    model.train()
    run(model)
    model.train(was_training)
    gen = torch.Generator().manual_seed(seed)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
        n = norm.num_features
        norm.running_var.mul_(torch.rand(n, generator=gen) * 0.4 + 0.8)
        norm.running_mean.add_(torch.randn(n, generator=gen) * 0.05 * norm.running_var.sqrt())
    return model


@torch.no_grad()
def unit_gain_(conv: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights of unit gain for a classifier initialised with std 0.01.

    Such a classifier's random bias would decide every pixel's class, and an argmax
    comparison would then compare constants.
    """
    gen = torch.Generator().manual_seed(seed)
    fan_in = conv.weight[0].numel()
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in**0.5)
    return conv


def flatten_tensors(outputs: Any) -> list:
    """Every tensor of a nested tuple/list/dict output, in a fixed order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        return [t for k in sorted(outputs) for t in flatten_tensors(outputs[k])]
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in flatten_tensors(item)]
    return []


def max_abs_diff(got: Any, expected: Any) -> float:
    """Largest absolute difference between two nested outputs of equal structure."""
    got, expected = flatten_tensors(got), flatten_tensors(expected)
    assert len(got) == len(expected) and got, (len(got), len(expected))
    worst = 0.0
    for g, e in zip(got, expected):
        assert g.shape == e.shape, (g.shape, e.shape)
        worst = max(worst, (g.double() - e.double()).abs().max().item() if g.numel() else 0.0)
    return worst


def _canonical_order(instances, decimals: int = 2):
    """Detections sorted by label, then rounded box, then score: ties in score cannot
    change the order."""
    keys = torch.cat([instances.bboxes.double().round(decimals=decimals),
                      instances.scores.double()[:, None]], dim=1)
    order = torch.arange(len(instances))
    for column in reversed(range(keys.shape[1])):
        order = order[torch.sort(keys[order, column], stable=True).indices]
    order = order[torch.sort(instances.labels[order], stable=True).indices]
    return instances[order]


def detection_diffs(got: Sequence, expected: Sequence, order_free: bool = False) -> dict:
    """Compare two lists of DetDataSamples: counts, labels, largest score and box gaps.

    ``box`` is the largest coordinate gap in pixels, ``box_rel`` the largest gap relative
    to its coordinate (at least 1 px).

    Args:
        order_free: compare the detections as sets. Random heads give many equal scores
            (within rounding) whose order NMS and top-k may swap; the sets must still agree.
    """
    result = dict(count=0, same_count=True, same_labels=True, score=0.0, box=0.0, box_rel=0.0)
    for g, e in zip(got, expected):
        g, e = g.pred_instances, e.pred_instances
        if len(g) != len(e):
            result['same_count'] = False
            continue
        if order_free:
            g, e = _canonical_order(g), _canonical_order(e)
        result['count'] += len(g)
        result['same_labels'] &= bool(torch.equal(g.labels, e.labels))
        if len(g):
            result['score'] = max(result['score'], (g.scores - e.scores).abs().max().item())
            gap = (g.bboxes - e.bboxes).abs()
            result['box'] = max(result['box'], gap.max().item())
            # Relative to each coordinate (float32 resolves about 1.2e-7 of a value).
            rel = gap / e.bboxes.abs().clamp(min=1.0)
            result['box_rel'] = max(result['box_rel'], rel.max().item())
    return result


def assert_same_detections(got: Sequence, expected: Sequence, atol: float = 1e-4,
                           order_free: bool = False) -> int:
    """Two lists of DetDataSamples hold the same boxes, labels and scores (within atol).

    Returns:
        The number of detections compared (so a test can check it is not zero).
    """
    diffs = detection_diffs(got, expected, order_free)
    assert diffs['same_count'] and diffs['same_labels'], diffs
    assert diffs['score'] <= atol and diffs['box'] <= atol, diffs
    return diffs['count']


def assert_same_segmentation(got: Sequence, expected: Sequence, atol: float = 1e-4) -> None:
    """Two lists of SegDataSamples: identical argmax maps, logits within ``atol``."""
    for g, e in zip(got, expected):
        assert torch.equal(g.pred_sem_seg.data, e.pred_sem_seg.data)
        assert max_abs_diff(g.seg_logits.data, e.seg_logits.data) < atol


class _Float64NMS:
    """mmcv's compiled ops with an ``nms`` that also takes float64 boxes (torchvision's)."""

    def __init__(self, ext_module) -> None:
        self._ext = ext_module

    def __getattr__(self, name: str):
        return getattr(self._ext, name)

    def nms(self, boxes, scores, iou_threshold: float, offset: int):
        if boxes.dtype != torch.float64:
            return self._ext.nms(boxes, scores, iou_threshold=iou_threshold, offset=offset)
        import torchvision
        if offset != 0:
            raise NotImplementedError('float64 NMS is torchvision\'s, which has no offset')
        # Both keep the highest-scoring box of each cluster with the same IoU
        # (areas without the +1 offset), so only rounding can tell them apart.
        return torchvision.ops.nms(boxes, scores, iou_threshold)


@contextlib.contextmanager
def float64_nms() -> Iterator[None]:
    """Let mmcv's ``nms`` (float32 only on the CPU) run on float64 boxes.

    A float32 parity test of a detector at full size meets NMS and top-k decisions
    that 1e-7 rounding flips (random weights give many near-equal scores and IoUs
    near the threshold); in float64 both sides make the same decisions, so the
    detections can be compared one by one.
    """
    import importlib
    from unittest import mock
    module = importlib.import_module('mmcv.ops.nms')
    with mock.patch.object(module, 'ext_module', _Float64NMS(module.ext_module)):
        yield


def numel(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


@contextlib.contextmanager
def record_outputs(modules: Iterable[nn.Module]) -> Iterator[List[Any]]:
    """Collect the outputs of ``modules`` (e.g. a detector's heads) while a model runs.

    Lets one ``test_step`` give both the raw head outputs and the post-processed
    predictions, instead of a second forward in ``'tensor'`` mode.
    """
    outputs: List[Any] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in modules]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def detector_heads(detector: nn.Module) -> List[nn.Module]:
    """The heads whose raw outputs a two-stage or cascade detector parity test compares."""
    heads = [detector.rpn_head]
    bbox_head = detector.roi_head.bbox_head
    return heads + (list(bbox_head) if isinstance(bbox_head, nn.ModuleList) else [bbox_head])


def load_converter(name: str) -> ModuleType:
    """Import ``tools/model_converters/<name>.py`` (tools are scripts, not a package)."""
    from mmplug_agg.testing.cli import TOOLS_DIR, load_tool
    if name not in sys.modules:
        sys.modules[name] = load_tool(TOOLS_DIR / 'model_converters' / f'{name}.py')
    return sys.modules[name]


def run_converter(module: ModuleType, *argv: str) -> None:
    """Run a converter's ``main`` in this process, as ``python tool.py *argv`` would.

    Raises:
        SystemExit: with code 1 when the tool reports a user mistake (one line on stderr).
    """
    from mmplug_agg.utils.launch import run_cli
    saved = sys.argv
    sys.argv = [f'{module.__name__}.py', *map(str, argv)]
    try:
        run_cli(module.main)
    finally:
        sys.argv = saved
