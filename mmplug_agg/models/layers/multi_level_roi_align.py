"""RoIAlign of every RoI from every pyramid level as row gathers (AugFPN, PANet).

mmcv's CPU RoIAlign reads the feature map channel plane by channel plane, so
each sampling point costs four cache misses per channel; pooling every RoI from
every level (soft RoI selection, consistent supervision, adaptive feature
pooling) made it a large share of a CPU training step. Here each level is laid
out channels-last, ``(B * H * W, C)``, and every output bin is one weighted bag
of rows (its sampling points' bilinear neighbours) summed by
``F.embedding_bag``: contiguous rows and one vectorised kernel per level, forward
and backward (the backward sorts the rows once and gathers again rather than
scattering). The sampling points, the bilinear weights and the
border rules are mmcv's (``roi_align_cpu``: points beyond one pixel outside the
map count as zero, coordinates are clamped at 0 and at the last row/column),
so the result equals mmcv's up to float32 summation order.
"""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


class _WeightedRowBags(torch.autograd.Function):
    """``out[i] = sum_k weights[i, k] * table[rows[i, k]]`` with a gather backward.

    ``embedding_bag``'s own backward scatters every row of the gradient into the
    table one by one; sorting the rows once turns the backward into the same kind
    of gather as the forward (a bag per table row), several times faster on CPU.
    """

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(rows, weights)
        ctx.num_table_rows = table.size(0)
        return F.embedding_bag(rows, table, mode='sum', per_sample_weights=weights)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        rows, weights = ctx.saved_tensors
        flat_rows = rows.flatten()
        sorted_rows, order = flat_rows.sort()
        table_rows = torch.arange(ctx.num_table_rows + 1, device=rows.device)
        offsets = torch.searchsorted(sorted_rows, table_rows)
        grad_table = F.embedding_bag(
            order // rows.size(1), grad_out.contiguous(), offsets, mode='sum',
            per_sample_weights=weights.flatten()[order], include_last_offset=True)
        return grad_table, None, None


def _axis_neighbours(start: Tensor, bin_size: Tensor, bins: int, grid: int,
                     size: int) -> Tuple[Tensor, Tensor]:
    """Bilinear neighbours along one axis: indices and weights ``(N, bins, grid, 2)``."""
    steps = torch.arange(bins, device=start.device, dtype=start.dtype).view(1, bins, 1)
    offsets = (torch.arange(grid, device=start.device, dtype=start.dtype) + 0.5).view(1, 1, grid)
    coord = (start.view(-1, 1, 1) + steps * bin_size.view(-1, 1, 1)
             + offsets * (bin_size / grid).view(-1, 1, 1))
    inside = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0)
    low = coord.floor()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    coord = torch.where(at_edge, low, coord)
    high = torch.where(at_edge, low, low + 1)
    frac = coord - low
    weights = torch.stack([1 - frac, frac], dim=-1) * inside.unsqueeze(-1)
    return torch.stack([low, high], dim=-1).long(), weights


def roi_align_level(feat: Tensor, rois: Tensor, output_size: Tuple[int, int],
                    spatial_scale: float, sampling_ratio: int, aligned: bool = True) -> Tensor:
    """mmcv's ``RoIAlign(pool_mode='avg')`` of ``rois`` on one level: ``(N, C, h, w)``.

    Args:
        feat: The level, ``(B, C, H, W)``.
        rois: ``(N, 5)``: batch index, x1, y1, x2, y2 in input pixels.
        output_size: ``(h, w)`` bins.
        spatial_scale: ``1 / stride`` of the level.
        sampling_ratio: Sampling points per bin side; must be > 0 (mmcv's adaptive
            ``0`` gives every RoI its own grid, which does not vectorise).
        aligned: mmcv's ``aligned`` (half-pixel offset).
    """
    if sampling_ratio <= 0:
        raise ValueError(f'roi_align_level needs sampling_ratio > 0, got {sampling_ratio}')
    batch, channels, height, width = feat.shape
    out_h, out_w = output_size
    rois = rois.to(feat.dtype)
    offset = 0.5 if aligned else 0.0
    start = rois[:, 1:3] * spatial_scale - offset
    extent = rois[:, 3:5] * spatial_scale - offset - start
    if not aligned:
        extent = extent.clamp(min=1.0)
    bin_x = extent[:, 0] / out_w
    bin_y = extent[:, 1] / out_h
    x_index, x_weight = _axis_neighbours(start[:, 0], bin_x, out_w, sampling_ratio, width)
    y_index, y_weight = _axis_neighbours(start[:, 1], bin_y, out_h, sampling_ratio, height)
    num_rois = rois.size(0)
    # (N, out_h, out_w, grid_y, grid_x, 2, 2): every sampling point's four neighbours
    image_base = (rois[:, 0].long() * (height * width)).view(-1, 1, 1, 1, 1, 1, 1)
    rows = (image_base
            + y_index.view(num_rois, out_h, 1, sampling_ratio, 1, 2, 1) * width
            + x_index.view(num_rois, 1, out_w, 1, sampling_ratio, 1, 2))
    weights = (y_weight.view(num_rois, out_h, 1, sampling_ratio, 1, 2, 1)
               * x_weight.view(num_rois, 1, out_w, 1, sampling_ratio, 1, 2)
               / (sampling_ratio * sampling_ratio))
    bag = sampling_ratio * sampling_ratio * 4
    table = feat.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
    pooled = _WeightedRowBags.apply(table, rows.reshape(-1, bag),
                                    weights.reshape(-1, bag).to(feat.dtype))
    # channels-last memory, NCHW shape: the next convolution or flatten reads it either way
    return pooled.view(num_rois, out_h, out_w, channels).permute(0, 3, 1, 2)


def roi_align_levels(feats: Sequence[Tensor], rois: Tensor, output_size: Tuple[int, int],
                     spatial_scales: Sequence[float], sampling_ratio: int,
                     aligned: bool = True) -> Tensor:
    """Every RoI from every level: ``(N, levels, C, h, w)``."""
    return torch.stack([
        roi_align_level(feat, rois, output_size, scale, sampling_ratio, aligned)
        for feat, scale in zip(feats, spatial_scales)
    ], dim=1)
