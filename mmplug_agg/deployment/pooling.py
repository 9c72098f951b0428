"""Pooling with input-dependent output sizes, in a form both ONNX exporters can trace.

ONNX has no adaptive pooling: torch's TorchScript-based exporter refuses
``adaptive_avg_pool2d`` unless the output size divides the input size, and the
dynamo exporter decomposes it into gathers whose indices are fixed at the traced
size (another input size then gives wrong numbers or an index error). Here the
same bins (bin ``i`` of ``n`` over ``L`` covers ``[floor(i*L/n), ceil((i+1)*L/n))``)
are built from the input's shape inside the graph:

* average pooling is a product with a (n, L) averaging matrix per axis;
* max pooling gathers a fixed number of candidates per bin (the widest bin's
  width, repeating the bin's last element where a bin is narrower, which a max
  does not see) and reduces them.

Sizes are integer expressions of the input's shape: under the TorchScript
exporter a traced size is a 0-dim tensor, under the dynamo exporter a SymInt,
in eager mode an int; the helpers accept all three, so one exported graph serves
every input size.

The modules that use these helpers call them only while exporting
(:func:`is_exporting`); in eager mode they keep torch's adaptive pooling, so
training and evaluation are unchanged (tests check both paths agree).
"""
from fractions import Fraction
from functools import lru_cache
from typing import Tuple, Union

import torch
from torch import Tensor

Size = Union[int, Tensor, 'torch.SymInt']

# Ratios are checked exact as integer fractions for every side up to this.
MAX_SIDE = 16384


def is_exporting() -> bool:
    """True while ``torch.onnx.export`` (either exporter) or ``torch.export`` traces."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


@lru_cache(maxsize=None)
def ratio_as_fraction(ratio: float) -> Tuple[int, int]:
    """``(p, q)`` with ``(side * p) // q == int(side * ratio)`` for every side <= MAX_SIDE.

    ``int(side * ratio)`` is computed in double precision; an exported graph
    computes sizes in integers instead, so the ratio must have an integer form
    that rounds the same way at every side a model can see.
    """
    # Plain Python (it may run while an exporter traces, where tensors are fake).
    sides = range(1, MAX_SIDE + 1)
    expected = [int(side * ratio) for side in sides]
    for max_denominator in (10, 100, 1000, 10000, 100000):
        frac = Fraction(ratio).limit_denominator(max_denominator)
        p, q = frac.numerator, frac.denominator
        if all((side * p) // q == value for side, value in zip(sides, expected)):
            return p, q
    raise ValueError(f'ratio {ratio} has no integer form that gives int(side * ratio) '
                     f'for every side up to {MAX_SIDE}; use a ratio such as 0.1 or 0.25')


def _clamp_min_one(size: Size) -> Size:
    if isinstance(size, Tensor):
        return size.clamp(min=1)
    if isinstance(size, int):
        return max(1, size)
    return torch.sym_max(size, 1)


def scaled_size(side: Size, ratio: Tuple[int, int]) -> Size:
    """``max(1, int(side * p / q))`` for an int, a traced size or a SymInt side."""
    numerator, denominator = ratio
    return _clamp_min_one((side * numerator) // denominator)


def ceil_div(side: Size, factor: int) -> Size:
    """``ceil(side / factor)`` for an int, a traced size or a SymInt side."""
    return (side + factor - 1) // factor


def _bins(in_size: Size, out_size: Size, device) -> Tuple[Tensor, Tensor]:
    """Start (inclusive) and end (exclusive) of the ``out_size`` adaptive bins."""
    index = torch.arange(out_size, device=device)
    start = (index * in_size) // out_size
    end = ((index + 1) * in_size + out_size - 1) // out_size
    return start, end


def _averaging_matrix(in_size: Size, out_size: Size, x: Tensor) -> Tensor:
    start, end = _bins(in_size, out_size, x.device)
    position = torch.arange(in_size, device=x.device)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(x.dtype) / (end - start)[:, None].to(x.dtype)


def adaptive_avg_pool2d(x: Tensor, size: Tuple[Size, Size]) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` as two matrix products (traceable sizes)."""
    height, width = x.shape[-2:]
    rows = _averaging_matrix(height, size[0], x)
    cols = _averaging_matrix(width, size[1], x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def _max_along_last(x: Tensor, out_size: Size, max_bin: int) -> Tensor:
    start, end = _bins(x.shape[-1], out_size, x.device)
    offsets = torch.arange(max_bin, device=x.device)
    index = torch.minimum(start[:, None] + offsets, end[:, None] - 1).flatten()
    gathered = x.index_select(-1, index)
    # The leading sizes come from the traced shape, so the graph reshapes at any size.
    leading = [gathered.shape[i] for i in range(gathered.dim() - 1)]
    return gathered.reshape(leading + [-1, max_bin]).amax(-1)


def adaptive_max_pool2d(x: Tensor, size: Tuple[Size, Size], max_bin: int) -> Tensor:
    """``F.adaptive_max_pool2d(x, size)`` by gathering ``max_bin`` candidates per bin.

    ``max_bin`` must be at least the widest bin, ``ceil(L / n) + 1`` at most; a
    caller that pools by a known factor ``f`` to ``ceil(L / f)`` passes ``f + 1``.
    """
    rows = _max_along_last(x.transpose(-1, -2), size[0], max_bin)
    return _max_along_last(rows.transpose(-1, -2), size[1], max_bin)
