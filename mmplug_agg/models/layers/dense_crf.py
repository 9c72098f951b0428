"""Fully connected CRF with Gaussian edge potentials, solved by mean-field inference.

Krähenbühl and Koltun, "Efficient Inference in Fully Connected CRFs with Gaussian
Edge Potentials", NIPS 2011; the post-processing of DeepLab v1/v2 (Chen et al.,
ICLR 2015 and TPAMI 2017). Every pixel ``i`` takes a label ``x_i``, with energy

    E(x) = sum_i U_i(x_i) + sum_{i<j} [x_i != x_j] k(f_i, f_j)

    k(f_i, f_j) = w_app * exp(-|p_i - p_j|^2 / (2 theta_alpha^2)
                              - |I_i - I_j|^2 / (2 theta_beta^2))
                  + w_smooth * exp(-|p_i - p_j|^2 / (2 theta_gamma^2))

where ``U = -log softmax(logits)`` is the unary, ``p`` the pixel position (in
pixels), ``I`` the RGB colour (0..255), and ``[.]`` the Potts compatibility. The
first kernel (appearance, bilateral) asks pixels that are close *and* alike in
colour to agree; the second (smoothness) removes small isolated regions.

Mean-field inference starts from ``Q = softmax(-U)``, then ``num_iterations``
times ``Q_i(l) = softmax_l(-U_i(l) + sum_k w_k m_k(l)_i)`` with ``m_k`` the
message of kernel ``k`` (with Potts compatibility, the sum over the other labels
is the label's own message up to a per-pixel constant, which the softmax drops;
hence the plus sign, as in the reference's ``-w Q`` compatibility).

Normalisation (``normalization``), with ``K`` a kernel (self term included) and
``n = K 1`` its sum per pixel:

* ``'row'`` (default): ``m = (K Q) / n``, a weighted average of marginals. The
  released DeepLab code (Krähenbühl's 2011 ``PottsPotential`` in
  deeplab-public-ver2's ``densecrf/libDenseCRF/densecrf.cpp`` and the Caffe
  ``DenseCRF`` layer) divides every message by its pixel's lattice sum; it is
  pydensecrf's ``NORMALIZE_AFTER``.
* ``'symmetric'``: ``m = n^-1/2 K (n^-1/2 Q)`` (pydensecrf's default,
  ``NORMALIZE_SYMMETRIC``).
* ``'none'``: the raw kernel sums ``sum_{j != i} k(f_i, f_j) Q_j`` of the energy
  above (pixel ``i`` itself excluded); at ``theta_alpha = 67`` they run into
  the thousands, so the weights must be about a thousand times smaller.

Methods (``method``):

* ``'permutohedral'`` (default). With ``'row'`` and ``'symmetric'``, both kernels
  are filtered as the reference does: on a permutohedral lattice (Adams, Baek and
  Davis, Eurographics 2010) in the 5-D space ``(x, y) / theta_alpha, (r, g, b) /
  theta_beta`` and in the 2-D space ``(x, y) / theta_gamma``: splat each pixel
  onto the ``d + 1`` vertices of its enclosing simplex with barycentric weights,
  blur with ``[1 2 1] / 2`` along each of the ``d + 1`` lattice axes, slice back
  with the same weights, times ``1 / (1 + 2^-d)``; ``n`` is that filter applied
  to ones. :class:`ReferenceLattice` builds the lattice with the reference's
  float operations and tie rules, so in float32 the marginals match pydensecrf
  to about 1e-8 (see ``tests/models/layers/test_dense_crf.py``). With
  ``'none'``, the lattice response is rescaled to estimate the exact Gaussian
  sums (divided by :data:`LATTICE_GAIN`, each pixel's own weight removed, see
  :class:`PermutohedralLattice`) and the smoothness kernel is an exact separable
  blur (truncated at :data:`BLUR_RADIUS_STDS` standard deviations).
* ``'exact'`` builds the ``HW x HW`` Gaussian kernels and multiplies: exact,
  quadratic in the pixel count, for small images (at most
  :data:`EXACT_MAX_PIXELS`): the model without the lattice's approximation.

Lattice gain (for ``'none'`` only). The lattice approximates a Gaussian of unit
standard deviation in feature space, not its scale. On the 2-D surfaces that
pixels form in the 5-D space (colour is a function of position), measured on
dense flat planes of constant colour at many offsets from the lattice, its sum
is :data:`LATTICE_GAIN` ``= 0.567`` times the exact Gaussian sum (0.50 to 0.57
on tilted planes). The normalised modes need no gain: it cancels in ``K / n``.

Speed. The lattices are built once per forward for the whole batch (the image
index is part of each vertex code) and reused by every iteration and by the
normalisers; the smoothness lattice, which depends on the image size only, is
also kept across calls for the most recent sizes (``cache_smoothness``); an
iteration is, per lattice, one splat (sparse CSR, reading the points in the
lattice's own order, in which they are grouped by simplex), ``d + 1`` blur
products and one slice, with the weights and normalisers folded into the slice;
only ``C - 1`` classes are filtered (the marginals sum to one). The module has
no parameters, runs on any device, in float32 (float64 for float64 logits) with
autocast disabled.
"""
import functools
import itertools
import math
import warnings
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ('permutohedral', 'exact')
NORMALIZATIONS = ('row', 'symmetric', 'none')
# Settings of DeepLab's released models (see docs/deeplab.md for the sources).
PRESETS = {
    # DeepLab-LargeFOV (v1, VGG-16), PASCAL VOC 2012.
    'deeplabv1_voc': dict(num_iterations=10, appearance_weight=4.0, appearance_xy_std=121.0,
                          appearance_rgb_std=5.0, smoothness_weight=3.0,
                          smoothness_xy_std=3.0, normalization='row'),
    # DeepLab v2, ResNet-101, PASCAL VOC 2012.
    'deeplabv2_voc': dict(num_iterations=10, appearance_weight=4.0, appearance_xy_std=67.0,
                          appearance_rgb_std=3.0, smoothness_weight=3.0,
                          smoothness_xy_std=1.0, normalization='row'),
}
DEFAULT_PRESET = 'deeplabv2_voc'
EXACT_MAX_PIXELS = 4096
# Image sizes whose smoothness lattice DenseCRF keeps (see ``cache_smoothness``).
SMOOTHNESS_CACHE_SIZE = 2
_SMOOTHNESS_CACHE: 'OrderedDict[tuple, dict]' = OrderedDict()
BLUR_RADIUS_STDS = 3.5
LATTICE_GAIN = 0.567
# Colours are clamped to [-margin, 255 + margin] so that lattice keys fit in an
# int64 whatever the image holds; the widest margin that fits is used.
COLOUR_MARGINS = (255.0, 127.0, 63.0, 31.0, 0.0)
_KEY_BITS = 62
# Rank permutations of at most this many coordinates get a table by Lehmer code
# (8! = 40320 rows).
LEHMER_TABLE_MAX_STEPS = 8
# ReferenceLattice deduplicates vertices and finds blur neighbours in dense tables of
# vertex codes when the codes span at most this many per point (plus a constant):
# 2-D positions do.
TABLE_MAX_CODES_PER_POINT = 16
TABLE_MIN_CODES = 2**20


def lattice_embedding(dim: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The ``(dim + 1) x dim`` map of features onto the lattice's hyperplane.

    Column ``k`` is ``(1, .., 1, -(k + 1), 0, .., 0)`` (``k + 1`` ones), scaled to
    length ``sqrt(2/3) (dim + 1)``: an orthogonal embedding into the plane of
    zero coordinate sum, scaled so that the ``[1 2 1]`` blur of the lattice
    approximates a Gaussian of unit standard deviation in feature space.

    Example:
        >>> e = lattice_embedding(2)
        >>> tuple(e.shape), bool(e.sum(0).abs().max() < 1e-12)
        ((3, 2), True)
    """
    scale = math.sqrt(2.0 / 3.0) * (dim + 1)
    embedding = torch.zeros(dim + 1, dim, dtype=dtype)
    for k in range(dim):
        column = scale / math.sqrt((k + 1) * (k + 2))
        embedding[:k + 1, k] = column
        embedding[k + 1, k] = -(k + 1) * column
    return embedding


def _key_layout(lower: Sequence[float], upper: Sequence[float],
                batch: int) -> Optional[Tuple[List[int], List[int]]]:
    """Origin and mixed-radix strides of the vertex keys, or None beyond 62 bits.

    A key packs the first ``d`` lattice coordinates (the last follows from the
    zero sum) and the batch index. The bounds are static, so no reduction over
    the data is needed; the margin keeps every vertex and every neighbour
    looked up from it inside its digit, so key arithmetic never carries.
    """
    dim = len(lower)
    embedding = lattice_embedding(dim)
    low = torch.tensor(lower, dtype=torch.float64)
    high = torch.tensor(upper, dtype=torch.float64)
    coord_min = torch.minimum(embedding * low, embedding * high).sum(1)[:dim]
    coord_max = torch.maximum(embedding * low, embedding * high).sum(1)[:dim]
    margin = 4 * (dim + 1)
    origin = [math.floor(v) - margin for v in coord_min.tolist()]
    strides = [1]
    for top, start in zip(coord_max.tolist(), origin):
        strides.append(strides[-1] * (math.ceil(top) + margin - start + 1))
    if strides[-1] * batch >= 2**_KEY_BITS:
        return None
    return origin, strides


def _csr(rows: Tensor, columns: Tensor, values: Tensor, size: Tuple[int, int]) -> Tensor:
    """A CSR matrix from valid parts, unchecked (a check would sync with the device)."""
    if columns.numel() < 2**31 and max(size) < 2**31:
        # Sparse BLAS takes 32-bit indices; int64 ones are converted at every product.
        rows, columns = rows.int(), columns.int()
    with warnings.catch_warnings():
        # CSR works on CPU and CUDA alike; torch still calls it beta.
        warnings.filterwarnings('ignore', message='Sparse CSR tensor support is in beta')
        return torch.sparse_csr_tensor(rows, columns, values, size=size, check_invariants=False)


class PermutohedralLattice:
    """Gaussian filtering of point values on a permutohedral lattice.

    Built once from features of shape ``(B, N, d)`` (``B`` independent point
    sets), then :meth:`filter` maps values of shape ``(B * N, C)`` to
    ``sum_j K(f_i, f_j) v_j`` (same set only), where ``K`` is the lattice's
    approximation of ``exp(-|f_i - f_j|^2 / 2)`` up to scale (see the module
    docstring), self term included. Splat, blur and slice are sparse CSR
    matrices, so a filter is ``d + 3`` sparse-dense products.

    Vertex keys are int64 mixed-radix codes of the lattice coordinates plus the
    batch index; the distinct vertices come from one sort, their neighbours along
    each lattice axis from a binary search among the sorted keys (a missing
    neighbour contributes nothing).

    Args:
        features (Tensor): ``(B, N, d)`` floating features.
        lower (Sequence[float]): Per-feature lower bound; features are clamped to
            it.
        upper (Sequence[float]): Per-feature upper bound; features are clamped.

    Raises:
        ValueError: When the bounds are too wide for 62-bit keys.

    Example:
        >>> feats = torch.rand(1, 100, 2) * 4
        >>> lattice = PermutohedralLattice(feats, [0., 0.], [4., 4.])
        >>> out = lattice.filter(torch.ones(100, 1))
        >>> tuple(out.shape), bool((out > 0).all())
        ((100, 1), True)
    """

    def __init__(self, features: Tensor, lower: Sequence[float], upper: Sequence[float]) -> None:
        if features.dim() != 3 or len(lower) != features.shape[-1] or len(upper) != len(lower):
            raise ValueError('PermutohedralLattice: expected features (B, N, d) and d lower and '
                             f'upper bounds, got {tuple(features.shape)}, {len(lower)}, '
                             f'{len(upper)}')
        batch, num_points, dim = features.shape
        layout = _key_layout(lower, upper, batch)
        if layout is None:
            raise ValueError('PermutohedralLattice: the feature bounds span too many lattice '
                             'cells for 62-bit vertex keys; use larger standard deviations')
        origin, strides = layout
        device, dtype = features.device, features.dtype
        self.dim, self.batch, self.num_points = dim, batch, num_points
        total = batch * num_points
        steps = dim + 1

        low = torch.tensor(lower, dtype=dtype, device=device)
        high = torch.tensor(upper, dtype=dtype, device=device)
        features = torch.maximum(torch.minimum(features, high), low)
        elevated = features @ lattice_embedding(dim, dtype).to(device).t()  # (B, N, d + 1)

        # The nearest point of the 0-coloured sublattice ((d+1) Z^(d+1)), then
        # the simplex around the residual, from the ranks of its coordinates.
        nearest = torch.round(elevated / steps)
        rem0 = (nearest * steps).long()
        residual = elevated - rem0.to(dtype)
        index = torch.arange(steps, device=device)
        earlier = index[None, :] < index[:, None]
        res_i, res_j = residual[..., :, None], residual[..., None, :]
        # rank_i counts the larger residuals; of equal ones, the earlier
        # coordinate ranks first, as in the reference.
        rank = ((res_j > res_i) | ((res_j == res_i) & earlier)).sum(-1)
        # Rounding may leave the point off the zero-sum plane; moving the
        # coordinates that overflow by d + 1 brings it back.
        rank = rank + nearest.sum(-1, keepdim=True).long()
        low_rank, high_rank = (rank < 0).long(), (rank > dim).long()
        rank = rank + steps * (low_rank - high_rank)
        rem0 = rem0 + steps * (low_rank - high_rank)

        # Barycentric weights of the d + 1 vertices, ordered by remainder.
        share = (elevated - rem0.to(dtype)) / steps
        bary = torch.zeros(batch, num_points, steps + 1, dtype=dtype, device=device)
        bary.scatter_add_(-1, dim - rank, share)
        bary.scatter_add_(-1, dim - rank + 1, -share)
        bary[..., 0] += 1 + bary[..., steps]
        bary = bary[..., :steps].reshape(total, steps)

        # Vertex k of the simplex is rem0 + (k, .., k) - (d + 1) on the
        # coordinates ranked above d - k. As codes (linear in the digits), vertex
        # k is vertex k - 1 plus the diagonal minus d + 1 on the coordinate of
        # rank d - k + 1: a cumulative sum over the coordinates in rank order.
        stride = torch.tensor(strides[:dim] + [0], device=device)
        origin_t = torch.tensor(origin + [0], device=device)
        base = ((rem0 - origin_t) * stride).sum(-1, keepdim=True)
        base = base + torch.arange(batch, device=device).view(batch, 1, 1) * strides[dim]
        stride_by_rank = torch.empty_like(rank).scatter_(-1, rank, stride.expand_as(rank))
        stride_by_rank = stride_by_rank.flip(-1).cumsum(-1)
        diagonal_code = sum(strides[:dim])
        codes = base + index * diagonal_code
        codes[..., 1:] -= steps * stride_by_rank[..., :dim]
        codes = codes.reshape(-1)

        sorted_codes, order = torch.sort(codes, stable=True)
        # The one host sync: the number of distinct vertices sizes everything after.
        keys, vertex_sorted, counts = torch.unique_consecutive(sorted_codes,
                                                               return_inverse=True,
                                                               return_counts=True)
        num_vertices = keys.numel()
        self.num_vertices = num_vertices
        # Two empty rows/columns after the vertices stand for missing neighbours.
        size = num_vertices + 2
        entries = total * steps
        index_options = dict(dtype=torch.long, device=device)

        # Splat: vertex rows, pixel columns (ascending within a row: stable sort).
        splat_rows = torch.cat([
            torch.zeros(1, **index_options),
            counts.cumsum(0),
            torch.full((2, ), entries, **index_options)
        ])
        # index_select: several times faster than advanced indexing for these gathers.
        self.splat = _csr(splat_rows, order // steps,
                          bary.reshape(-1).index_select(0, order), (size, total))
        # Slice: pixel rows with their d + 1 vertices, columns sorted per row.
        vertex = torch.empty_like(vertex_sorted).index_copy_(0, order, vertex_sorted)
        vertex, by_vertex = vertex.view(total, steps).sort(-1)
        self.slice = _csr(torch.arange(0, entries + 1, steps, **index_options), vertex.reshape(-1),
                          bary.gather(-1, by_vertex).reshape(-1), (total, size))

        # Blur along axis j: v + (v[n1] + v[n2]) / 2 with n1 = key - 1 + (d+1) e_j
        # and n2 = key + 1 - (d+1) e_j (axis d is implicit in the key).
        rows = torch.arange(num_vertices, device=device)
        blur_rows = torch.cat([
            torch.arange(0, 3 * num_vertices + 1, 3, **index_options),
            torch.full((2, ), 3 * num_vertices, **index_options)
        ])
        self.blurs = []
        for axis in range(steps):
            shift = -diagonal_code + (steps * strides[axis] if axis < dim else 0)
            columns, weights = [rows], [torch.ones(num_vertices, dtype=dtype, device=device)]
            for sign, missing in ((1, num_vertices), (-1, num_vertices + 1)):
                target = keys + sign * shift
                found = torch.searchsorted(keys, target).clamp_(max=num_vertices - 1)
                hit = keys[found] == target
                columns.append(torch.where(hit, found, missing))
                weights.append(hit.to(dtype) * 0.5)
            columns, by_column = torch.stack(columns, -1).sort(-1)
            weights = torch.stack(weights, -1).gather(-1, by_column)
            self.blurs.append(
                _csr(blur_rows, columns.reshape(-1), weights.reshape(-1), (size, size)))

        # The lattice's weight of each point on itself when the vertices on the
        # blur paths inside its simplex are occupied (see the module docstring).
        apart = (index[:, None] - index[None, :]).abs().to(dtype)
        paths = 0.5**apart + 0.5**(steps - apart)
        paths.diagonal().fill_(1 + 0.5**dim)
        self.self_weight = ((bary @ paths) * bary).sum(-1)

    def filter(self, values: Tensor) -> Tensor:
        """Splat ``(B * N, C)`` values, blur them on the lattice and slice them back."""
        lattice_values = self.splat @ values
        for blur in self.blurs:
            lattice_values = blur @ lattice_values
        return self.slice @ lattice_values


def gaussian_taps(std: float, radius_stds: float = BLUR_RADIUS_STDS) -> Tensor:
    """Unnormalised 1-D Gaussian ``exp(-x^2 / (2 std^2))`` for ``|x| <= ceil(radius_stds std)``.

    Example:
        >>> gaussian_taps(1.0, 2.0)
        tensor([0.1353, 0.6065, 1.0000, 0.6065, 0.1353], dtype=torch.float64)
    """
    radius = math.ceil(radius_stds * std)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    return torch.exp(-offsets**2 / (2 * std**2))


def _positions(height: int, width: int, batch: int, dtype: torch.dtype,
               device: torch.device) -> Tensor:
    """``(B, H * W, 2)`` pixel coordinates ``(x, y)`` in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device),
                            indexing='ij')
    return torch.stack([xs, ys], -1).reshape(1, height * width, 2).expand(batch, -1, -1)


def _gaussian_matrix(features: Tensor) -> Tensor:
    """``exp(-|f_i - f_j|^2 / 2)`` for all pairs of ``(B, N, d)`` features, zero diagonal."""
    # Differences, not the matmul expansion: that loses ~1e-5 of |f|^2 in
    # float32, a lot for colours of magnitude 85.
    kernel = torch.cdist(features, features, compute_mode='donot_use_mm_for_euclid_dist')
    kernel = kernel.square_().mul_(-0.5).exp_()
    kernel.diagonal(dim1=-2, dim2=-1).zero_()
    return kernel


class _ExactKernels:
    """Both kernels as dense ``(B, HW, HW)`` matrices with a zero diagonal."""

    def __init__(self, crf: 'DenseCRF', colours: Tensor, height: int, width: int,
                 with_appearance: bool) -> None:
        batch = colours.shape[0]
        self.crf, self.batch, self.combined = crf, batch, False
        positions = _positions(height, width, batch, colours.dtype, colours.device)
        scaled = positions / crf.smoothness_xy_std
        self.smoothness = _gaussian_matrix(scaled)
        self.appearance = None
        if with_appearance:
            features = torch.cat(
                [positions / crf.appearance_xy_std, colours / crf.appearance_rgb_std], -1)
            self.appearance = _gaussian_matrix(features)

    def messages(self, q: Tensor) -> Tuple[Tensor, Tensor]:
        q = q.view(self.batch, -1, q.shape[-1])
        return (self.appearance @ q).flatten(0, 1), (self.smoothness @ q).flatten(0, 1)

    def apply(self, kind: str, q: Tensor) -> Tensor:
        """One kernel's message (self excluded, unweighted)."""
        return (getattr(self, kind) @ q.view(self.batch, -1, q.shape[-1])).flatten(0, 1)

    def pairwise(self, q: Tensor) -> Tensor:
        if not self.combined:
            # Mean field needs only the weighted sum: fold it into the smoothness
            # matrix, in place (this object serves one forward, never messages).
            crf = self.crf
            self.smoothness.mul_(crf.smoothness_weight)
            if self.appearance is not None:
                self.smoothness.add_(self.appearance, alpha=crf.appearance_weight)
            self.appearance, self.combined = None, True
        return (self.smoothness @ q.view(self.batch, -1, q.shape[-1])).flatten(0, 1)


class _LatticeKernels:
    """Appearance on a permutohedral lattice, smoothness as a separable blur."""

    def __init__(self, crf: 'DenseCRF', colours: Tensor, height: int, width: int,
                 with_appearance: bool) -> None:
        batch, dtype, device = colours.shape[0], colours.dtype, colours.device
        self.crf, self.shape = crf, (batch, height, width)
        self.lattice = None
        if with_appearance:
            xy_std, rgb_std = crf.appearance_xy_std, crf.appearance_rgb_std
            positions = _positions(height, width, batch, dtype, device) / xy_std
            features = torch.cat([positions, colours / rgb_std], -1)
            lower = [0.0, 0.0]
            upper = [(width - 1) / xy_std, (height - 1) / xy_std]
            for margin in COLOUR_MARGINS:
                if _key_layout(lower + [-margin / rgb_std] * 3,
                               upper + [(255 + margin) / rgb_std] * 3, batch) is not None:
                    break
            else:
                raise ValueError(
                    f'DenseCRF: appearance_xy_std={xy_std} and appearance_rgb_std={rgb_std} '
                    f'are too small for a {height}x{width} image (the lattice keys overflow)')
            self.lattice = PermutohedralLattice(features, lower + [-margin / rgb_std] * 3,
                                                upper + [(255 + margin) / rgb_std] * 3)
        taps = gaussian_taps(crf.smoothness_xy_std).to(dtype=dtype, device=device)
        self.radius = taps.numel() // 2
        self.taps = taps

    def _blur(self, q: Tensor) -> Tensor:
        batch, height, width = self.shape
        channels = q.shape[-1]
        # (B, H, W, C) memory is channels_last NCHW: no copies around the convs.
        image = q.view(batch, height, width, channels).permute(0, 3, 1, 2)
        rows = self.taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
        image = F.conv2d(image, rows, padding=(self.radius, 0), groups=channels)
        image = F.conv2d(image, rows.transpose(2, 3), padding=(0, self.radius), groups=channels)
        return image.permute(0, 2, 3, 1).reshape(-1, channels)

    def appearance(self, q: Tensor, weight: float = 1.0) -> Tensor:
        lattice = self.lattice
        out = lattice.filter(q).addcmul_(lattice.self_weight[:, None], q, value=-1)
        return out.clamp_(min=0).mul_(weight / LATTICE_GAIN)

    def smoothness(self, q: Tensor, weight: float = 1.0) -> Tensor:
        return self._blur(q).sub_(q).mul_(weight)

    def messages(self, q: Tensor) -> Tuple[Tensor, Tensor]:
        return self.appearance(q), self.smoothness(q)

    def apply(self, kind: str, q: Tensor) -> Tensor:
        """One kernel's message (self excluded, unweighted)."""
        return getattr(self, kind)(q)

    def pairwise(self, q: Tensor) -> Tensor:
        crf = self.crf
        out = torch.zeros_like(q) if self.lattice is None else self.appearance(
            q, crf.appearance_weight)
        if crf.smoothness_weight > 0:
            out.add_(self._blur(q).sub_(q), alpha=crf.smoothness_weight)
        return out


# ------------------------------------------------------------------------------
# The normalised kernels of the released code, built for speed.


def _reference_scales(dim: int, dtype: torch.dtype) -> List[float]:
    """The elevation's diagonal, rounded as the reference rounds it (float32 constants)."""
    inv_std = math.sqrt(2.0 / 3.0) * (dim + 1)
    if dtype != torch.float64:
        inv_std = float(torch.tensor(inv_std, dtype=torch.float32))
    scales = [inv_std / math.sqrt((k + 2) * (k + 1)) for k in range(dim)]
    if dtype != torch.float64:
        scales = [float(torch.tensor(s, dtype=torch.float32)) for s in scales]
    return scales


def _enclosing_simplices(features: Tensor) -> Tuple[List[Tensor], List[Tensor], Tensor]:
    """Remainder-0 point, coordinate ranks and barycentric weights of every point.

    ``features`` is ``(P, d)``. Returns the first ``d`` coordinates of the
    remainder-0 vertex divided by ``d + 1`` (int64 columns; the last coordinate
    follows from the zero sum), the ``d + 1`` ranks (int8 columns) and
    the ``(d + 1, P)`` barycentric weights, vertex ``k`` in row ``k`` (rows, not
    columns: gathers and scatters of ``d + 1``-wide rows are several times slower
    than of long ones). The
    elevation follows the reference's order of float operations (a running sum
    from the last feature), so that in float32 the simplices are the reference's
    bit for bit.
    """
    dim = features.shape[-1]
    steps = dim + 1
    dtype = features.dtype
    scales = _reference_scales(dim, dtype)
    columns = features.unbind(-1)
    elevated: List[Tensor] = [columns[0]] * steps
    running = torch.zeros_like(columns[0])
    for j in range(dim, 0, -1):
        scaled = columns[j - 1] * scales[j - 1]
        elevated[j] = running - j * scaled
        running = running + scaled
    elevated[0] = running
    down = 1.0 / steps if dtype == torch.float64 else float(
        torch.tensor(1.0 / steps, dtype=torch.float32))
    nearest = [torch.round(e * down) for e in elevated]
    rem0 = [n * steps for n in nearest]
    residual = [e - r for e, r in zip(elevated, rem0)]
    # rank_i: how many coordinates have a larger residual (ties: the earlier one
    # counts as larger, as in the reference's pairwise loop).
    # Counted as j (the earlier coordinates) less the earlier ones that are smaller;
    # comparisons written into an int8 buffer add twice as fast as bool masks.
    rank = [torch.full((features.shape[0], ), j, dtype=torch.int8, device=features.device)
            for j in range(steps)]
    smaller = rank[0].new_empty(rank[0].shape)
    for i in range(dim):
        for j in range(i + 1, steps):
            torch.lt(residual[i], residual[j], out=smaller)
            rank[i] += smaller
            rank[j] -= smaller
    # Rounding can leave the point off the zero-sum plane: shift the ranks and
    # move the overflowing coordinates by d + 1.
    # The coordinates stay in floating point (integers, exact) until the codes
    # need them: int64 round trips cost more than the arithmetic.
    excess = sum(nearest).to(torch.int8)
    quotients = []
    for i in range(steps):
        shifted = rank[i] + excess
        carry = (shifted < 0).to(torch.int8) - (shifted > dim).to(torch.int8)
        rank[i] = shifted + carry * steps
        carry = carry.to(dtype)
        rem0[i] = rem0[i] + carry * steps
        if i < dim:
            quotients.append((nearest[i] + carry).long())
    # The weights are differences of the residuals in rank order.
    share = torch.stack([(e - r) * down for e, r in zip(elevated, rem0)])
    by_rank = torch.empty_like(share).scatter_(0, torch.stack(rank).long(), share)
    by_rank = by_rank.flip(0)  # row p holds the residual of rank d - p
    bary = torch.empty_like(share)
    torch.sub(by_rank[1:], by_rank[:-1], out=bary[1:])
    bary[0] = by_rank[0] + (1 - by_rank[dim])
    return quotients, rank, bary


def _search_increasing(keys: Tensor, targets: Tensor) -> Tensor:
    """``torch.searchsorted(keys, targets)`` for increasing targets.

    On the CPU numpy's, which starts each search from the previous one's bounds:
    about twice as fast on such targets.
    """
    if keys.device.type != 'cpu':
        return torch.searchsorted(keys, targets)
    return torch.from_numpy(np.searchsorted(keys.numpy(), targets.numpy()))


@functools.lru_cache(maxsize=None)
def _rank_owners(steps: int) -> Tensor:
    """``(steps!, steps)``: row ``l`` gives, for each rank, the coordinate that has
    it in the rank permutation of Lehmer code ``l`` (lexicographic order)."""
    ranks = torch.tensor(list(itertools.permutations(range(steps))))
    return torch.empty_like(ranks).scatter_(1, ranks, torch.arange(steps).expand_as(ranks))


class ReferenceLattice:
    """The permutohedral lattice of the released dense-CRF code, as index arrays.

    Built once per image (or batch) from features of shape ``(B, N, d)``: every
    point's ``d + 1`` enclosing vertices and barycentric weights, every vertex's
    two neighbours along each of the ``d + 1`` blur axes, and the splat entries
    grouped by vertex. The simplices, weights and blur neighbours are those of
    Krähenbühl's ``Permutohedral::init`` (same float operations, same tie
    rules); where the reference uses a hash table, vertices are found by sorting
    integer codes of their coordinates.

    Work is organised around simplices: points are grouped by their enclosing
    simplex (one sort of ``B * N`` codes; from 3-D features on, the codes are led
    by the first two features, so that the groups follow the pixels in the
    CRF's appearance kernel), and vertices are deduplicated per
    remainder class (vertex ``k`` of every simplex has all coordinates ``= k``
    modulo ``d + 1``, so the classes are disjoint) with one ``unique`` per class over
    the distinct simplices only. The blur neighbours of a remainder-``k`` vertex
    are in the classes ``k - 1`` and ``k + 1``.

    Attributes:
        num_vertices (int): ``M``.
        order (Tensor): ``(B * N,)`` the points grouped by simplex.
        grouped_vertex (Tensor): ``(B * N, d + 1)`` vertex ids (int32 below 2^31
            vertices) of each point in :attr:`order` (:attr:`vertex` gives them
            in the points' order).
        weights (Tensor): ``(d + 1, B * N)`` barycentric weights, vertex ``k``
            in row ``k`` (:attr:`bary` is its ``(B * N, d + 1)`` view).
        neighbours (Tensor): ``(d + 1, M, 2)`` neighbour ids, ``-1`` where absent
            (computed from :attr:`padded_neighbours`).
        padded_neighbours (Tensor): ``(d + 1, 2, M)`` neighbour ids, ``M``
            where absent (the zero row of the blur matrices); int32 below 2^31
            vertices.
        splat_crow, splat_columns: the splat matrix in CSR form, rows =
            vertices (class by class), columns = positions in ``order``; the
            entries of class ``k`` (``B * N`` of them) carry the points' weight
            ``k``.

    Args:
        features (Tensor): ``(B, N, d)`` floating features (already divided by
            the kernel's standard deviations).
        names (str): What to blame when the features span too many lattice
            cells for int64 codes.
    """

    def __init__(self, features: Tensor, names: str = 'the standard deviations') -> None:
        batch, num, dim = features.shape
        steps = dim + 1
        device = features.device
        total = batch * num
        q0, rank, self.weights = _enclosing_simplices(features.reshape(total, dim))

        # Vertices are coded per remainder class: a class-k vertex has every
        # coordinate c = (d + 1) q + k, so a mixed-radix code of the q of its first d
        # coordinates and the batch index identifies it within its class, (d + 1)^d
        # times fewer codes than of the coordinates themselves (32-bit ones for
        # 5-D features: sorts twice as fast).
        # From 3-D features on, the two most significant digits are q0 - q1 and
        # q1 - q2 (an invertible integer map of the q: still one code per vertex),
        # which depend on the first two features alone: the points are then ordered
        # by those first (the pixel positions, for the CRF's appearance kernel), and
        # gathers between this order and the smoothness lattice's read nearby memory.
        if dim >= 3:
            digits = q0[2:] + [q0[1] - q0[2], q0[0] - q0[1]]  # least significant first
        else:
            digits = q0
        # The range of each digit comes from the data, with room for the vertices and
        # their neighbours (a digit moves by at most one from a point's remainder-0
        # vertex to another vertex of its simplex, and one more to a neighbour).
        bounds = torch.stack([torch.stack([q.amin(), q.amax()]) for q in digits]).tolist()
        strides, origin, span = [], [], 1
        for low, high in bounds:
            origin.append(low - 2)
            strides.append(span)
            span *= high - low + 5
        if steps * span * batch >= 2**62:
            raise ValueError(f'DenseCRF: {names} are too small for this image: its lattice '
                             'coordinates do not fit 62-bit codes')
        code0 = sum((q - o) * s for q, o, s in zip(digits, origin, strides))
        # The code is linear in the q: its change per unit of each coordinate's q.
        if dim >= 3:
            strides = [strides[-1], strides[-2] - strides[-1], strides[0] - strides[-2]
                       ] + strides[1:dim - 2]
        if batch > 1:
            code0 = code0 + torch.arange(batch, device=device).repeat_interleave(num) * span

        # Group the points by simplex: (remainder-0 vertex, rank permutation).
        factorials = [math.factorial(dim - i) for i in range(steps)]
        # Lehmer codes are below (d + 1)!: 16 bits up to d = 6 (5040; 8! is past
        # int16), 32 beyond.
        lehmer_type = torch.int16 if math.factorial(steps) <= 2**15 else torch.int32
        lehmer = torch.zeros(total, dtype=lehmer_type, device=device)
        inversion = lehmer.new_empty(total)
        for i in range(dim):
            for j in range(i + 1, steps):
                torch.lt(rank[j], rank[i], out=inversion)
                lehmer.add_(inversion, alpha=factorials[i])
        first = torch.ones(total, dtype=torch.bool, device=device)
        if span * batch * math.factorial(steps) < 2**62:
            key = code0 * math.factorial(steps) + lehmer
            if span * batch * math.factorial(steps) < 2**31:
                order = torch.sort(key.int(), stable=True)[1]
                grouped_key = key.index_select(0, order)
            else:
                grouped_key, order = torch.sort(key)
            first[1:] = grouped_key[1:] != grouped_key[:-1]
            grouped0 = code0.index_select(0, order)
        else:
            order = torch.sort(lehmer, stable=True)[1]
            order = order.index_select(0, torch.sort(code0.index_select(0, order),
                                                     stable=True)[1])
            grouped0 = code0.index_select(0, order)
            grouped_lehmer = lehmer.index_select(0, order)
            first[1:] = ((grouped0[1:] != grouped0[:-1]) |
                         (grouped_lehmer[1:] != grouped_lehmer[:-1]))
        starts = first.nonzero().squeeze(1)
        num_simplices = starts.numel()
        counts = torch.diff(starts, append=starts.new_tensor([total]))
        self._simplex_of_grouped = first.cumsum(0) - 1
        self.order = order

        # Vertex k is vertex k - 1 plus the diagonal, minus d + 1 on the coordinate
        # of rank d - k + 1: its q is q0 less one on the coordinates of the k
        # highest ranks, a cumulative sum over the strides in rank order.
        representative = order.index_select(0, starts)
        simplex_code0 = grouped0.index_select(0, starts)
        rank_strides = torch.tensor(strides + [0], device=device)
        if steps <= LEHMER_TABLE_MAX_STEPS:
            # The offsets depend on the rank permutation alone: a table by Lehmer
            # code, read once per class (no per-simplex scatter).
            stride_by_rank = rank_strides[_rank_owners(steps).to(device)]
            offsets = stride_by_rank.flip(1)[:, :dim].cumsum(1).t().contiguous()
            simplex_lehmer = lehmer.index_select(0, representative).int()
            codes = [simplex_code0] + [simplex_code0 - offset.index_select(0, simplex_lehmer)
                                       for offset in offsets]
        else:
            simplex_rank = torch.stack([r.index_select(0, representative) for r in rank],
                                       -1).long()
            by_rank = torch.empty_like(simplex_rank).scatter_(
                1, simplex_rank, rank_strides.expand(num_simplices, steps))
            codes = [simplex_code0]
            for k in range(1, steps):
                codes.append(codes[-1] - by_rank[:, steps - k])
        # 32-bit keys deduplicate twice as fast; the ids are the same.
        narrow = span * batch < 2**31
        self.span = span * batch
        # Few codes (low-dimensional features: the smoothness kernel): vertices are
        # deduplicated by marking a table of codes, and neighbours found in one.
        tabled = steps * self.span <= TABLE_MAX_CODES_PER_POINT * total + TABLE_MIN_CODES
        keys, local = [], []
        for k in range(steps):
            if k == 0:
                # Already sorted: simplices follow code0.
                new = torch.ones(num_simplices, dtype=torch.bool, device=device)
                new[1:] = simplex_code0[1:] != simplex_code0[:-1]
                keys.append(simplex_code0.masked_select(new))
                local.append(new.cumsum(0) - 1)
            elif tabled:
                # The marked codes in increasing order are those of unique(sorted=True).
                seen = torch.zeros(self.span, dtype=torch.bool, device=device)
                seen.index_fill_(0, codes[k], True)
                keys.append(seen.nonzero().squeeze(1))
                local.append((seen.cumsum(0) - 1).index_select(0, codes[k]))
            else:
                unique, ids = torch.unique(codes[k].int() if narrow else codes[k],
                                           sorted=True, return_inverse=True)
                keys.append(unique.long())
                local.append(ids)
        sizes = [key.numel() for key in keys]
        base = [0]
        for size in sizes:
            base.append(base[-1] + size)
        self.num_vertices = base[-1]
        # Vertex ids in the 32-bit indices that sparse BLAS takes, where they fit.
        vertex_type = torch.int32 if self.num_vertices < 2**31 else torch.long
        self._simplex_vertex = torch.stack([ids.to(vertex_type) + b for ids, b in zip(local, base)],
                                           -1)
        # (A row gather costs half of repeat_interleave's copy of the runs.)
        self.grouped_vertex = (self._simplex_vertex if num_simplices == total else
                               self._simplex_vertex.index_select(0, self._simplex_of_grouped))

        # Splat entries grouped by vertex: per class, the points sorted stably by
        # their vertex there (per vertex, its simplices in order, each one's run of
        # points in order); class 0's vertices follow the simplices, so its points
        # are in order. In the 32-bit indices that sparse BLAS takes, where they fit
        # (see _csr).
        index_type = torch.int32 if steps * total < 2**31 else torch.long
        self.splat_columns = torch.empty(steps * total, dtype=index_type, device=device)
        self.splat_columns[:total] = torch.arange(total, dtype=index_type, device=device)
        crows = []
        for k in range(steps):
            per_vertex = torch.zeros(sizes[k], dtype=torch.long, device=device)
            per_vertex.index_add_(0, local[k], counts)
            crows.append((torch.cumsum(per_vertex, 0) + k * total).to(index_type))
            if k > 0:
                # Narrow sort keys sort faster; the (stable) order is the same.
                key_type = (torch.int16 if sizes[k] <= 2**15 else
                            torch.int32 if sizes[k] <= 2**31 else torch.long)
                vertex = (self.grouped_vertex[:, k] - base[k]).to(key_type)
                self.splat_columns[k * total:(k + 1) * total] = torch.argsort(vertex, stable=True)
        self.splat_crow = torch.cat([crows[0].new_zeros(1)] + crows)

        # Blur neighbours along axis j of a class-k vertex: c - 1 + (d + 1) e_j in
        # class k - 1 and c + 1 - (d + 1) e_j in class k + 1 (axis d: the implicit
        # coordinate); in codes, the first is the key plus shifts[k][j].
        diagonal = sum(strides)
        shifts = [[(strides[axis] if axis < dim else 0) - (diagonal if k == 0 else 0)
                   for axis in range(steps)] for k in range(steps)]
        if tabled:
            # A table of vertex ids by class and code: a neighbour is a gather.
            self.padded_neighbours = self._neighbours_by_table(keys, shifts, base, device)
            return
        # (d + 1, 2, M): each axis's first and second neighbours are contiguous rows.
        absent = self.num_vertices
        neighbours = torch.empty((steps, 2, self.num_vertices), dtype=vertex_type, device=device)
        # All classes are searched at once: class k's codes offset by k times the span
        # are increasing in the vertex ids (the digit margins keep every neighbour
        # code inside its class). Only the first is searched: v is u's first
        # neighbour iff u is v's second.
        key_type = torch.int32 if steps * self.span < 2**31 else torch.long
        class_of_vertex = torch.repeat_interleave(
            torch.arange(steps, device=device), torch.tensor(sizes, device=device),
            output_size=self.num_vertices)
        all_keys = (torch.cat(keys) + class_of_vertex * self.span).to(key_type)
        here = torch.arange(self.num_vertices, dtype=vertex_type, device=device)
        second = here.new_empty(self.num_vertices + 1)
        for axis in range(steps):
            second.fill_(absent)
            to_first = torch.tensor(
                [shifts[k][axis] + ((k - 1) % steps - k) * self.span for k in range(steps)],
                dtype=key_type, device=device)
            target = all_keys + to_first.index_select(0, class_of_vertex)
            # Class 0's targets are in the last class: searched last, all targets
            # are in increasing order.
            leading = sizes[0]
            found = _search_increasing(all_keys, torch.cat([target[leading:], target[:leading]]))
            found = torch.cat([found[-leading:], found[:-leading]])
            found.clamp_(max=self.num_vertices - 1)
            hit = all_keys.index_select(0, found) == target
            first_neighbour = torch.where(hit, found, absent)
            neighbours[axis, 0] = first_neighbour
            # The misses write into a spare last slot (no masked selection).
            second.index_copy_(0, first_neighbour, here)
            neighbours[axis, 1] = second[:-1]
        self.padded_neighbours = neighbours

    @property
    def neighbours(self) -> Tensor:
        """``(d + 1, M, 2)`` neighbour ids, ``-1`` where absent."""
        padded = self.padded_neighbours
        return torch.where(padded == self.num_vertices, -1, padded).transpose(1, 2)

    @property
    def bary(self) -> Tensor:
        """``(B * N, d + 1)`` barycentric weights (a view of :attr:`weights`)."""
        return self.weights.t()

    def grouped_weights(self) -> Tensor:
        """``(d + 1, B * N)`` barycentric weights of the points in :attr:`order`."""
        return self.weights.index_select(1, self.order)

    @property
    def vertex(self) -> Tensor:
        """``(B * N, d + 1)`` vertex ids of each point, in the points' (spatial) order."""
        simplex = torch.empty_like(self._simplex_of_grouped).index_copy_(
            0, self.order, self._simplex_of_grouped)
        return self._simplex_vertex.index_select(0, simplex)

    def _neighbours_by_table(self, keys: List[Tensor], shifts: List[List[int]],
                             base: List[int], device: torch.device) -> Tensor:
        """The ``(d + 1, 2, M)`` padded neighbours from a (class, code) -> vertex id table."""
        steps = len(keys)
        table = torch.full((steps * self.span, ), self.num_vertices, dtype=torch.int32,
                           device=device)
        for k, key in enumerate(keys):
            table.index_copy_(0, key + k * self.span,
                              torch.arange(base[k], base[k + 1], dtype=torch.int32, device=device))
        neighbours = torch.empty((steps, 2, self.num_vertices), dtype=torch.int32, device=device)
        for axis in range(steps):
            for k, key in enumerate(keys):
                rows = slice(base[k], base[k + 1])
                # u's first neighbour v (class k - 1) is key + shift; u is the first
                # neighbour of its second one w (class k + 1): key = code(w) + shift.
                # The digit margins keep every neighbour code inside its class.
                first = key + (((k - 1) % steps) * self.span + shifts[k][axis])
                second = key + (((k + 1) % steps) * self.span - shifts[(k + 1) % steps][axis])
                torch.index_select(table, 0, first, out=neighbours[axis, 0, rows])
                torch.index_select(table, 0, second, out=neighbours[axis, 1, rows])
        return neighbours


class _NormalisedKernels:
    """``q -> sum_k w_k N_k(K_k q)`` for both kernels, as the released code computes it.

    ``K_k`` is the lattice filter (splat, ``[1 2 1] / 2`` blur along every axis,
    slice, times ``1 / (1 + 2^-d)``), self term included; ``N_k`` is the
    kernel's normalisation with ``n_k = K_k 1``: ``'row'`` divides the message
    by ``n_k`` (Krähenbühl's 2011 code inside DeepLab, pydensecrf's
    ``NORMALIZE_AFTER``), ``'symmetric'`` filters ``n_k^-1/2 q`` and multiplies
    by ``n_k^-1/2`` again (pydensecrf's default). Per kernel, one call is
    ``d + 3`` sparse products: the splat, the blurs, and a slice whose entries
    carry the weight, the normaliser and the lattice constant.

    Each lattice filters its points in its own grouped order (points of one
    simplex together, simplices in vertex-code order), where its splat reads
    consecutive points and its slice reads neighbouring vertices: in any other
    order the smoothness lattice, with more vertices than pixels, misses the
    cache on almost every read and costs three times as much. Values are passed
    in the first lattice's order (:attr:`order`); the other lattices gather
    their points from it and their messages back, one permutation each way.
    Only ``C - 1`` channels need filtering: the marginals sum to one, so the
    last channel's message is :attr:`constant` (the message of ones) minus the
    others'.
    """

    def __init__(self,
                 lattices: Sequence[ReferenceLattice],
                 weights: Sequence[float],
                 normalization: str,
                 dtype: torch.dtype,
                 caches: Optional[Sequence[Optional[dict]]] = None) -> None:
        # caches[i]: a dict kept across calls for an image-independent lattice
        # (the smoothness kernel's), filled here with what depends on it alone:
        # its blurs, unscaled splat and slice, and normaliser (in its own order).
        caches = [None] * len(lattices) if caches is None else caches
        owned = [{} if cache is None else cache for cache in caches]
        device = lattices[0].weights.device
        total = lattices[0].weights.shape[1]
        self.total = total
        self.order = lattices[0].order
        self._vertex_buffers: dict = {}
        self._flat_permutations: dict = {}
        # to_own[i][j]: where lattice i's j-th point sits in the first lattice's
        # order; from_own[i] the inverse, to bring its message back.
        # position: where each point (in the input's order) sits in ``order``.
        self.position = position = torch.empty_like(self.order).index_copy_(
            0, self.order, torch.arange(total, device=device))
        self.to_own = [None] + [position.index_select(0, l.order) for l in lattices[1:]]
        self.from_own = [None] + [
            torch.empty_like(g).index_copy_(0, g, torch.arange(total, device=device))
            for g in self.to_own[1:]
        ]
        # Each lattice's weights in its own order, gathered once, where needed: a
        # kept lattice's matrices need them only for the symmetric splat.
        in_order: dict = {}
        for i, (lattice, parts) in enumerate(zip(lattices, owned)):
            if 'blurs' not in parts:
                in_order[i] = lattice.grouped_weights()
                parts['blurs'] = self._blur_matrices(lattice, dtype)
                parts['splat'] = self._splat_matrix(lattice, in_order[i])
                parts['slice'] = self._slice_matrix(lattice, in_order[i])
        self.blurs = [parts['blurs'] for parts in owned]
        self.splats = [parts['splat'] for parts in owned]
        ones = torch.ones(total, 1, dtype=dtype, device=device)
        for i, parts in enumerate(owned):
            if 'norm' not in parts:
                parts['norm'] = self._normaliser(i, ones[:, 0], parts['slice'])
        norms = [parts['norm'] for parts in owned]
        if normalization == 'symmetric':
            post = [(n + 1e-20).rsqrt() for n in norms]
            for i, (lattice, parts, p) in enumerate(zip(lattices, owned, post)):
                # Kept with a kept lattice: it depends on the lattice's normaliser alone.
                if 'symmetric splat' not in parts:
                    parts['symmetric splat'] = self._splat_matrix(
                        lattice, (in_order[i] if i in in_order else lattice.grouped_weights()) * p)
                self.splats[i] = parts['symmetric splat']
        else:
            post = [(n + 1e-20).reciprocal() for n in norms]
        self.slices = []
        for lattice, cache, parts, p, w in zip(lattices, caches, owned, post, weights):
            unscaled, steps = parts['slice'], lattice.weights.shape[0]
            if cache is None:
                # This call's lattice alone: scaled in place.
                unscaled.values().view(-1, steps).mul_((p * w)[:, None])
                self.slices.append(unscaled)
                continue
            # A kept lattice's scaled slice depends on its own normaliser and the weight.
            key = ('scaled slice', normalization, w)
            if key not in parts:
                parts[key] = _csr(unscaled.crow_indices(), unscaled.col_indices(),
                                  (unscaled.values().view(-1, steps) * (p * w)[:, None]).view(-1),
                                  unscaled.shape)
            self.slices.append(parts[key])
        # Rows of the row-normalised kernels sum to one.
        self.constant = (self(ones)[:, 0] if normalization == 'symmetric' else
                         torch.full((total, ), float(sum(weights)), dtype=dtype, device=device))

    @staticmethod
    def _blur_matrices(lattice: ReferenceLattice, dtype: torch.dtype) -> List[Tensor]:
        """Per axis ``v + (v[n1] + v[n2]) / 2``; row M stays zero and stands for absent ones."""
        num = lattice.num_vertices
        device = lattice.padded_neighbours.device
        # Built in the 32-bit indices that the products take (see _csr), for all
        # axes at once; the crow and value arrays are shared by the axes.
        index = torch.int32 if 3 * num < 2**31 else torch.long
        crow = torch.arange(0, 3 * num + 1, 3, dtype=index, device=device)
        crow = torch.cat([crow, crow[-1:]])
        values = torch.tensor([1.0, 0.5, 0.5], dtype=dtype, device=device).repeat(num)
        padded = lattice.padded_neighbours
        columns = torch.empty((padded.shape[0], num, 3), dtype=index, device=device)
        columns[..., 0] = torch.arange(num, dtype=index, device=device)
        columns[..., 1:] = padded.transpose(1, 2)
        return [_csr(crow, c.view(-1), values, (num + 1, num + 1)) for c in columns]

    @staticmethod
    def _splat_matrix(lattice: ReferenceLattice, grouped_weights: Tensor) -> Tensor:
        """Vertex rows (+ a zero row), point columns in the lattice's grouped order.

        ``grouped_weights`` is ``(d + 1, P)``: class ``k``'s entries read row ``k``.
        """
        steps, total = grouped_weights.shape
        classes = lattice.splat_columns.view(steps, total)
        # Class 0 lists the points in order (its simplices are sorted by their
        # remainder-0 vertex already): no gather.
        values = torch.cat([grouped_weights[0]] + [
            w.index_select(0, c) for w, c in zip(grouped_weights[1:], classes[1:])])
        crow = torch.cat([lattice.splat_crow, lattice.splat_crow[-1:]])
        return _csr(crow, lattice.splat_columns, values, (lattice.num_vertices + 1, total))

    @staticmethod
    def _slice_matrix(lattice: ReferenceLattice, grouped_weights: Tensor) -> Tensor:
        """Point rows in the lattice's grouped order, their ``d + 1`` vertex columns."""
        steps, total = grouped_weights.shape
        alpha = 1.0 / (1.0 + 2.0**-(steps - 1))
        columns = lattice.grouped_vertex
        values = grouped_weights.new_empty(total, steps)
        torch.mul(grouped_weights.t(), alpha, out=values)
        return _csr(torch.arange(0, steps * total + 1, steps, device=columns.device),
                    columns.reshape(-1), values.view(-1), (total, lattice.num_vertices + 1))

    def _filter_one(self, index: int, q: Tensor, slice_matrix: Tensor,
                    out: Optional[Tensor] = None) -> Tensor:
        """Lattice ``index``'s filter of ``q``, both in that lattice's own order."""
        values, spare = self._buffers(index, q.shape[1])
        values = _spmm(self.splats[index], q, values)
        for blur in self.blurs[index]:
            values, spare = _spmm(blur, values, spare), values
        return slice_matrix @ values if out is None else _spmm(slice_matrix, values, out)

    def _normaliser(self, index: int, ones: Tensor, slice_matrix: Tensor) -> Tensor:
        """Lattice ``index``'s filter of ones: a chain of sparse matrix-vector products
        (a product with one dense column costs as much as with four)."""
        values = torch.mv(self.splats[index], ones)
        for blur in self.blurs[index]:
            values = torch.mv(blur, values)
        return torch.mv(slice_matrix, values)

    def _buffers(self, index: int, channels: int) -> List[Tensor]:
        """Two vertex buffers of lattice ``index``, kept: products write into them."""
        key = (index, channels)
        if key not in self._vertex_buffers:
            rows = self.splats[index].shape[0]
            # Zeros, not garbage: addmm's beta = 0 must see finite values.
            self._vertex_buffers[key] = [
                self.splats[index].values().new_zeros(rows, channels) for _ in range(2)]
        return self._vertex_buffers[key]

    def _permutations(self, index: int, channels: int) -> Tuple[Tensor, Tensor]:
        """Flat element indices of ``to_own`` and ``from_own`` for ``(P, channels)`` rows.

        A gather of whole 3-float rows costs several times one of their elements.
        """
        key = (index, channels)
        if key not in self._flat_permutations:
            # 32-bit indices where they fit: less index traffic per gather.
            index_type = torch.int32 if self.total * channels < 2**31 else torch.long
            offsets = torch.arange(channels, dtype=index_type, device=self.order.device)
            self._flat_permutations[key] = tuple(
                (rows.to(index_type)[:, None] * channels + offsets).view(-1)
                for rows in (self.to_own[index], self.from_own[index]))
        return self._flat_permutations[key]

    def __call__(self, q: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """Weighted, normalised messages of ``(P, C')`` values, both in :attr:`order`.

        Written into ``out`` if given (and autograd does not record the call).
        """
        kept = not _records(q)
        channels = q.shape[1]
        out = self._filter_one(0, q, self.slices[0], out if kept else None)
        for index in range(1, len(self.slices)):
            to_own, from_own = self._permutations(index, channels)
            own, message, back = self._permutation_buffers(index, channels) if kept else [None] * 3
            own = _index_select(q.reshape(-1), to_own, own).view(q.shape)
            message = self._filter_one(index, own, self.slices[index], message)
            out.view(-1).add_(_index_select(message.view(-1), from_own, back))
        return out

    def _permutation_buffers(self, index: int, channels: int) -> List[Tensor]:
        key = (index, channels, 'permuted')
        if key not in self._vertex_buffers:
            self._vertex_buffers[key] = [self.splats[index].values().new_empty(
                self.total * channels) for _ in range(3)]
        own, message, back = self._vertex_buffers[key]
        return [own, message.view(self.total, channels), back]


def _transpose_index(rows: int, columns: int, device: torch.device) -> Tensor:
    """Flat indices that gather a contiguous ``(rows, columns)`` tensor as its transpose."""
    index_type = torch.int32 if rows * columns < 2**31 else torch.long
    return (torch.arange(columns, dtype=index_type, device=device)[:, None] +
            torch.arange(rows, dtype=index_type, device=device) * columns).view(-1)


def _records(*tensors: Tensor) -> bool:
    """Whether autograd records ops on ``tensors`` (then nothing is written in place)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _index_select(source: Tensor, index: Tensor, out: Optional[Tensor]) -> Tensor:
    return source.index_select(0, index) if out is None else torch.index_select(
        source, 0, index, out=out)


def _spmm(sparse: Tensor, dense: Tensor, out: Tensor) -> Tensor:
    """``sparse @ dense``, into ``out`` (no zero-filled result to allocate and copy)
    unless autograd records the product: then a new tensor, as backward needs it."""
    if _records(sparse, dense):
        return sparse @ dense
    return torch.addmm(out, sparse, dense, beta=0, out=out)


def _check_number(name: str, value, positive: bool) -> float:
    valid = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not valid or value < 0 or (positive and value == 0):
        need = 'a positive' if positive else 'a non-negative'
        raise ValueError(f'DenseCRF: {name} must be {need} finite number, got {value!r}')
    return float(value)


class DenseCRF(nn.Module):
    """Mean-field inference in a fully connected CRF (DeepLab's post-processing).

    Refines per-pixel class scores with the image: pixels that are close and of
    similar colour are pushed towards the same label (appearance kernel), and
    nearby pixels too (smoothness kernel). See the module docstring for the
    model, the message-passing methods and the normalisations. Has no
    parameters; build it from a config dict with ``DenseCRF(**cfg)``.

    Settings come from, in increasing priority: the defaults (DeepLab v2's
    ResNet-101 VOC settings, row normalisation), the ``preset``, and the
    arguments given explicitly (not None).

    Args:
        preset (str, optional): Settings of a released model, one of
            :data:`PRESETS`: ``'deeplabv1_voc'`` (DeepLab-LargeFOV, VOC 2012)
            or ``'deeplabv2_voc'`` (DeepLab v2 ResNet-101, VOC 2012).
        num_iterations (int): Mean-field iterations. Default 10.
        appearance_weight (float): ``w_app`` (prototxt ``bi_w``). Default 4.
        appearance_xy_std (float): ``theta_alpha`` in pixels (``bi_xy_std``).
            Default 67.
        appearance_rgb_std (float): ``theta_beta`` in 0..255 colour levels
            (``bi_rgb_std``). Default 3.
        smoothness_weight (float): ``w_smooth`` (``pos_w``). Default 3.
        smoothness_xy_std (float): ``theta_gamma`` in pixels (``pos_xy_std``).
            Default 1.
        method (str): ``'permutohedral'`` (linear time; default) or ``'exact'``
            (dense kernel matrices, images of at most :data:`EXACT_MAX_PIXELS`
            pixels).
        cache_smoothness (bool): Keep the smoothness kernel's lattice, its blur,
            splat and slice matrices and its normaliser (they depend on the image
            size only, not on its colours) for the :data:`SMOOTHNESS_CACHE_SIZE`
            most recent image sizes, shared by all instances; the results are the
            same either way. The memory kept is about 190 bytes per pixel (51 MB at
            512x512, with ``smoothness_xy_std=1``; 210 with ``'symmetric'``, which
            also keeps its splat). Only for the permutohedral
            method with ``'row'`` or ``'symmetric'`` normalisation. Default True.
        normalization (str): How each kernel's message is normalised, with
            ``n_i`` the kernel's sum over all pixels ``j`` (itself included):
            ``'row'`` (default): divided by ``n_i``, a weighted average of the
            marginals, as in the released DeepLab code (Krähenbühl's 2011
            dense CRF; pydensecrf's ``NORMALIZE_AFTER``); ``'symmetric'``:
            ``D^-1/2 K D^-1/2`` (pydensecrf's default ``NORMALIZE_SYMMETRIC``);
            ``'none'``: the raw kernel sums of the energy (thousands at
            theta_alpha = 67, so weights must be far smaller).

    Example:
        >>> import torch
        >>> crf = DenseCRF(preset='deeplabv2_voc', num_iterations=5)
        >>> logits = torch.randn(2, 4, 30, 40)
        >>> images = torch.rand(2, 3, 30, 40) * 255
        >>> q = crf(logits, images)
        >>> tuple(q.shape), bool(torch.allclose(q.sum(1), torch.ones(2, 30, 40)))
        ((2, 4, 30, 40), True)
    """

    def __init__(self,
                 preset: Optional[str] = None,
                 num_iterations: Optional[int] = None,
                 appearance_weight: Optional[float] = None,
                 appearance_xy_std: Optional[float] = None,
                 appearance_rgb_std: Optional[float] = None,
                 smoothness_weight: Optional[float] = None,
                 smoothness_xy_std: Optional[float] = None,
                 method: str = 'permutohedral',
                 normalization: Optional[str] = None,
                 cache_smoothness: bool = True) -> None:
        super().__init__()
        if preset is not None and preset not in PRESETS:
            raise ValueError(f'DenseCRF: preset must be one of {tuple(PRESETS)} or None, got '
                             f'{preset!r}')
        settings = dict(PRESETS[DEFAULT_PRESET])
        if preset is not None:
            settings.update(PRESETS[preset])
        given = dict(num_iterations=num_iterations, appearance_weight=appearance_weight,
                     appearance_xy_std=appearance_xy_std,
                     appearance_rgb_std=appearance_rgb_std,
                     smoothness_weight=smoothness_weight, smoothness_xy_std=smoothness_xy_std,
                     normalization=normalization)
        settings.update({key: value for key, value in given.items() if value is not None})
        num_iterations = settings['num_iterations']
        if (not isinstance(num_iterations, int) or isinstance(num_iterations, bool)
                or num_iterations < 0):
            raise ValueError(
                f'DenseCRF: num_iterations must be a non-negative int, got {num_iterations!r}')
        if method not in METHODS:
            raise ValueError(f'DenseCRF: method must be one of {METHODS}, got {method!r}')
        if settings['normalization'] not in NORMALIZATIONS:
            raise ValueError(f'DenseCRF: normalization must be one of {NORMALIZATIONS}, '
                             f"got {settings['normalization']!r}")
        self.preset = preset
        self.normalization = settings['normalization']
        self.num_iterations = num_iterations
        for name in ('appearance_weight', 'smoothness_weight'):
            setattr(self, name, _check_number(name, settings[name], False))
        for name in ('appearance_xy_std', 'appearance_rgb_std', 'smoothness_xy_std'):
            setattr(self, name, _check_number(name, settings[name], True))
        self.method = method
        if not isinstance(cache_smoothness, bool):
            raise ValueError(f'DenseCRF: cache_smoothness must be True or False, got '
                             f'{cache_smoothness!r}')
        self.cache_smoothness = cache_smoothness

    def extra_repr(self) -> str:
        return (f'preset={self.preset!r}, num_iterations={self.num_iterations}, '
                f'method={self.method!r}, normalization={self.normalization!r}, '
                f'appearance=({self.appearance_weight}, xy {self.appearance_xy_std}, '
                f'rgb {self.appearance_rgb_std}), smoothness=({self.smoothness_weight}, '
                f'xy {self.smoothness_xy_std})')

    def _check_inputs(self,
                      logits: Tensor,
                      images: Tensor,
                      method: str,
                      name: str = 'logits') -> None:
        if not isinstance(logits, Tensor) or logits.dim() != 4 or not logits.is_floating_point():
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ValueError(f'DenseCRF: expected floating {name} of shape (N, C, H, W), got '
                             f'{shape}')
        if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f'DenseCRF: expected RGB images of shape (N, 3, H, W) in 0..255, '
                             f'got {shape}')
        if images.shape[0] != logits.shape[0]:
            raise ValueError(f'DenseCRF: expected as many images as {name} ({logits.shape[0]}), '
                             f'got {images.shape[0]}')
        if images.shape[-2:] != logits.shape[-2:]:
            raise ValueError(f'DenseCRF: expected images of the {name}\' size '
                             f'{tuple(logits.shape[-2:])}, got {tuple(images.shape[-2:])}; '
                             f'resize the {name} to the image first')
        if method not in METHODS:
            raise ValueError(f'DenseCRF: method must be one of {METHODS}, got {method!r}')
        pixels = logits.shape[-2] * logits.shape[-1]
        if method == 'exact' and pixels > EXACT_MAX_PIXELS:
            raise ValueError(f"DenseCRF: method='exact' builds dense HW x HW kernels and takes "
                             f'at most {EXACT_MAX_PIXELS} pixels, got {pixels}; use '
                             "method='permutohedral'")

    def _kernels(self, images: Tensor, method: str, dtype: torch.dtype, with_appearance: bool):
        batch, _, height, width = images.shape
        colours = images.to(dtype).permute(0, 2, 3, 1).reshape(batch, height * width, 3)
        kernels = _ExactKernels if method == 'exact' else _LatticeKernels
        return kernels(self, colours, height, width, with_appearance)

    @staticmethod
    def _compute_dtype(logits: Tensor) -> torch.dtype:
        return torch.float64 if logits.dtype == torch.float64 else torch.float32

    def messages(self,
                 values: Tensor,
                 images: Tensor,
                 method: Optional[str] = None) -> Tuple[Tensor, Tensor]:
        """Unweighted, unnormalised messages ``sum_{j != i} k(f_i, f_j) v_j`` of both kernels.

        These are what ``normalization='none'`` passes (on the lattice: its
        estimate of the exact sums, see the module docstring).

        Args:
            values (Tensor): ``(N, C, H, W)`` values to pass (e.g. marginals).
            images (Tensor): ``(N, 3, H, W)`` RGB images in 0..255.
            method (str, optional): Overrides ``self.method``.

        Returns:
            tuple[Tensor, Tensor]: The appearance and the smoothness messages,
            each ``(N, C, H, W)``. The appearance kernel is computed even when
            its weight is zero.
        """
        method = self.method if method is None else method
        self._check_inputs(values, images, method, 'values')
        batch, channels, height, width = values.shape
        dtype = self._compute_dtype(values)
        with torch.autocast(values.device.type, enabled=False):
            kernels = self._kernels(images, method, dtype, with_appearance=True)
            q = values.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels)
            return tuple(
                m.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
                for m in kernels.messages(q))

    def _exact_normalised_pairwise(self, kernels, q: Tensor):
        """``q -> sum_k w_k N_k((K_k + I) q)`` with dense kernels (``K_k`` has no diagonal).

        ``N_k`` divides by ``n = (K_k + I) 1`` (row) or filters ``n^-1/2 q`` and
        multiplies by ``n^-1/2`` (symmetric); adding ``I`` restores the self term
        that the released code keeps.
        """
        ones = q.new_ones(q.shape[0], 1)
        terms = [(kind, weight) for kind, weight in (
            ('appearance', self.appearance_weight), ('smoothness', self.smoothness_weight))
                 if weight > 0]
        sums = {kind: kernels.apply(kind, ones) + 1 for kind, _ in terms}
        symmetric = self.normalization == 'symmetric'
        scales = {kind: s.rsqrt() if symmetric else s.reciprocal() for kind, s in sums.items()}

        def pairwise(q: Tensor) -> Tensor:
            out = torch.zeros_like(q)
            for kind, weight in terms:
                scaled = q * scales[kind] if symmetric else q
                out.addcmul_(kernels.apply(kind, scaled).add_(scaled), scales[kind], value=weight)
            return out

        return pairwise

    def _reference_kernels(self, images: Tensor, dtype: torch.dtype) -> '_NormalisedKernels':
        """The two normalised lattice kernels of the released code (weight-0 ones left out)."""
        batch, _, height, width = images.shape
        positions = _positions(height, width, batch, dtype, images.device)
        lattices, weights = [], []
        if self.appearance_weight > 0:
            colours = images.to(dtype).permute(0, 2, 3, 1).reshape(batch, -1, 3)
            colours = colours.clamp(-255.0, 510.0)
            features = torch.cat([positions / self.appearance_xy_std,
                                  colours / self.appearance_rgb_std], -1)
            lattices.append(ReferenceLattice(features, 'appearance_xy_std and appearance_rgb_std'))
            weights.append(self.appearance_weight)
        caches = [None] * len(lattices)
        if self.smoothness_weight > 0:
            # The smoothness lattice depends on the image size only: kept across calls.
            key = (batch, height, width, self.smoothness_xy_std, dtype, images.device)
            cache = _SMOOTHNESS_CACHE.pop(key, None) if self.cache_smoothness else None
            if cache is None:
                cache = dict(lattice=ReferenceLattice(positions / self.smoothness_xy_std,
                                                      'smoothness_xy_std'))
            if self.cache_smoothness:
                _SMOOTHNESS_CACHE[key] = cache  # most recent last
                while len(_SMOOTHNESS_CACHE) > SMOOTHNESS_CACHE_SIZE:
                    _SMOOTHNESS_CACHE.popitem(last=False)
            lattices.append(cache['lattice'])
            caches.append(cache if self.cache_smoothness else None)
            weights.append(self.smoothness_weight)
        return _NormalisedKernels(lattices, weights, self.normalization, dtype, caches)

    def forward(self, logits: Tensor, images: Tensor) -> Tensor:
        """Marginals ``Q`` of shape ``(N, C, H, W)`` (probabilities over ``C``).

        Runs in float32 (float64 for float64 logits) with autocast disabled:
        under ``torch.autocast`` the inputs are cast up and the lattice's sums
        keep their precision.

        Args:
            logits (Tensor): ``(N, C, H, W)`` class scores at the image's size;
                the unary is ``-log softmax(logits)`` (equivalently DeepLab's
                ``-fc8``: the two differ by a per-pixel constant).
            images (Tensor): ``(N, 3, H, W)`` RGB images, 0..255 (not
                normalised); colours are clamped to ``[-255, 510]``.

        Returns:
            Tensor: float32 marginals (float64 for float64 logits); all ones
            for a single class.
        """
        self._check_inputs(logits, images, self.method)
        batch, channels, height, width = logits.shape
        dtype = self._compute_dtype(logits)
        with torch.autocast(logits.device.type, enabled=False):
            if channels == 1:
                return torch.ones(logits.shape, dtype=dtype, device=logits.device)
            weighted = self.appearance_weight > 0 or self.smoothness_weight > 0
            if self.num_iterations == 0 or not weighted:
                return torch.softmax(logits.to(dtype), 1)
            if self.method == 'permutohedral' and self.normalization != 'none':
                return self._reference_mean_field(logits.to(dtype), images)
            # (B * H * W, C) rows: lattice rows without a transpose, channels_last
            # memory for the blur.
            unary = F.log_softmax(logits.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels), -1)
            kernels = self._kernels(images, self.method, dtype, self.appearance_weight > 0)
            if self.normalization == 'none':
                pairwise = kernels.pairwise
            else:
                pairwise = self._exact_normalised_pairwise(kernels, unary)
            q = unary.exp()
            for _ in range(self.num_iterations):
                q = torch.softmax(pairwise(q).add_(unary), -1)
            return q.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()

    @staticmethod
    def _mean_field_step(kernels: _NormalisedKernels, q: Tensor, unary: Tensor,
                         unary_last: Tensor, buffers: Optional[Tuple[Tensor, ...]]) -> Tensor:
        """One update of the ``(C, P)`` marginals; into ``buffers`` where given.

        The last class's message is the constant minus the others', summed row by
        row: a reduction over the 3 or so columns of ``(P, C - 1)`` is slow.
        """
        last = q.shape[0] - 1
        if buffers is None:
            message = kernels(q[:last].t().contiguous()).t()
            others = message[0]
            for row in message[1:]:
                others = others + row
            return torch.softmax(torch.cat([unary[:last] + message, (unary_last - others)[None]]),
                                 0)
        inputs, update, others, message, transpose = buffers
        # (C - 1, P) -> (P, C - 1) as a gather by flat index: several times faster
        # than a copy from the transposed view.
        torch.index_select(q.view(-1), 0, transpose, out=inputs.view(-1))
        message = kernels(inputs, message).t()
        others.copy_(message[0])
        for row in message[1:]:
            others.add_(row)
        torch.add(unary[:last], message, out=update[:last])
        torch.sub(unary_last, others, out=update[last])
        return torch.softmax(update, 0)

    def _reference_mean_field(self, logits: Tensor, images: Tensor) -> Tensor:
        batch, channels, height, width = logits.shape
        kernels = self._reference_kernels(images, logits.dtype)
        # (C, B * H * W) in the kernels' point order: the softmax over a leading
        # axis is fast, and the first lattice's splat reads consecutive points.
        order = kernels.order
        unary = F.log_softmax(logits.permute(1, 0, 2, 3).reshape(channels, -1), 0)
        unary = unary.index_select(1, order)
        q = torch.softmax(unary, 0)
        last = channels - 1
        # The marginals sum to one: the last class's message follows from the others'.
        unary_last = unary[last] + kernels.constant
        # Without autograd every step writes into the same buffers: fresh tensors
        # of this size cost more than the arithmetic on them.
        points = unary.shape[1]
        buffers = None if _records(unary) else (
            unary.new_empty(points, last), torch.empty_like(unary), unary.new_empty(points),
            unary.new_empty(points, last), _transpose_index(last, points, unary.device))
        for _ in range(self.num_iterations):
            q = self._mean_field_step(kernels, q, unary, unary_last, buffers)
        q = q.index_select(1, kernels.position)  # a gather: faster than copying back
        return q.view(channels, batch, height, width).permute(1, 0, 2, 3).contiguous()
