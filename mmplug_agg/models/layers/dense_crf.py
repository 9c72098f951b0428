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

Mean-field inference approximates the posterior by independent per-pixel
marginals ``Q``: start from ``Q = softmax(-U)``, then ``num_iterations`` times

    m_k(l)_i = sum_{j != i} k_k(f_i, f_j) Q_j(l)          (message passing)
    Q_i(l)  = softmax_l(-U_i(l) + sum_k w_k m_k(l)_i)       (Potts update)

With the Potts model, ``-sum_{l' != l} M(l')`` equals ``M(l)`` minus a per-pixel
constant, which the softmax drops; hence the plus sign. All the cost is in the
message passing: a Gaussian filter over all pixel pairs. Two ways to do it:

* ``'exact'`` builds the ``HW x HW`` kernel matrix (diagonal zeroed) once per
  forward and multiplies it with ``Q``: exact, quadratic in the pixel count, only
  for small images (at most :data:`EXACT_MAX_PIXELS`); the ground truth.
* ``'permutohedral'`` (default, linear in the pixel count) follows the reference
  implementation. The smoothness kernel depends on positions only, so it is a
  separable Gaussian blur (zero padding: pixels beyond the border do not exist),
  truncated at :data:`BLUR_RADIUS_STDS` standard deviations, minus the centre
  tap. The appearance kernel is filtered on a permutohedral lattice (Adams, Baek
  and Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice",
  Eurographics 2010) in the 5-D space ``(x, y) / theta_alpha, (r, g, b) /
  theta_beta``: each pixel is splatted onto the ``d + 1`` vertices of its
  enclosing simplex with barycentric weights, the lattice is blurred with
  ``[1 2 1] / 2`` along each of its ``d + 1`` axes, and each pixel slices its
  value back with the same weights. See :class:`PermutohedralLattice`.

Normalisation of the lattice filter. The lattice approximates a Gaussian of unit
standard deviation in feature space, but not its scale. Per unit of 5-D volume
its gain is ``2^(d+1) / sqrt(d+1) * (3 / (4 pi))^(d/2) = 0.728`` (the blur
multiplies mass by ``2^(d+1)``; a lattice vertex owns ``sqrt(3/2)^d / sqrt(d+1)``
of volume). Pixels, however, lie on a 2-D surface of that space (the colour is a
function of the position), and on such surfaces the lattice gives less: measured
on dense flat planes of constant colour, at many random offsets from the
lattice, the lattice sum is :data:`LATTICE_GAIN` ``= 0.567`` times the exact
Gaussian sum (0.50 to 0.57 on tilted planes; ±6% between offsets). The lattice
response is divided by that gain, so that its messages estimate the exact
Gaussian sums of the energy above, like the ``'exact'`` method. The reference
instead scales by ``1 / (1 + 2^-d)``, which leaves its appearance messages at
about 0.55 of the exact sums (and its smoothness messages, from a 2-D lattice,
at about 0.88), and keeps each pixel's message to itself: to match its
strength here, scale DeepLab's weights by those factors (about 2.2 and 2.65
instead of 4 and 3).

Kernel normalisation (``normalization``). With ``'none'`` the messages are the
raw kernel sums of the energy above; with the appearance kernel at
``theta_alpha = 67`` a pixel's sum runs into the thousands, so any weight of order
one makes the update a hard vote of the similar pixels. The released dense-CRF
code (Krähenbühl's 2.x) normalises each kernel by default, symmetrically and with
each pixel's own term: ``D^-1/2 (K + I) D^-1/2 Q`` with ``D = diag((K + I) 1)``,
so that a message is a weighted average of marginals in [0, 1]; weights such as
DeepLab's 4 and 3 are of that scale. ``'symmetric'`` (the default) does the
same, on top of either method.

Self-contribution. Messages exclude ``j = i``. The exact and blur kernels drop
the diagonal or the centre tap. On the lattice, pixel ``i`` reaches itself with
weight ``b_i^T G b_i`` (``b_i`` its barycentric weights) where ``G_ab = 2^-m +
2^-(d+1-m)`` for vertices ``m = |a - b|`` remainders apart and ``G_aa = 1 +
2^-d`` (the blur paths between two vertices of one simplex). This is exact
where the lattice vertices along those paths are occupied, i.e. wherever the
pixel has neighbours, and too large by up to about 30% for an isolated pixel,
whose true message is near zero; the appearance messages are therefore clamped
at zero after the subtraction.

Cost: the lattice (keys, simplex vertices, splat/slice/blur operators as sparse
CSR matrices) is built once per forward and reused by every iteration; a batch
shares one lattice, the batch index being part of each vertex key, so there is
no per-image loop. The only host synchronisation is the one that finding the
distinct vertices inherently has (``torch.unique_consecutive`` must return the
vertex count). The module has no parameters and works on any device (float32,
or float64 for float64 logits).
"""
import math
import warnings
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ('permutohedral', 'exact')
NORMALIZATIONS = ('symmetric', 'none')
EXACT_MAX_PIXELS = 4096
BLUR_RADIUS_STDS = 3.5
LATTICE_GAIN = 0.567
# Colours are clamped to [-margin, 255 + margin] so that lattice keys fit in an
# int64 whatever the image holds; the widest margin that fits is used.
COLOUR_MARGINS = (255.0, 127.0, 63.0, 31.0, 0.0)
_KEY_BITS = 62


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
    model, the two message-passing methods and the lattice's normalisation.
    Has no parameters; build it from a config dict with ``DenseCRF(**cfg)``.

    Args:
        num_iterations (int): Mean-field iterations. Defaults to 10.
        appearance_weight (float): ``w_app``. Defaults to 4 (DeepLab, VOC).
        appearance_xy_std (float): ``theta_alpha`` in pixels. Defaults to 67.
        appearance_rgb_std (float): ``theta_beta`` in 0..255 colour levels.
            Defaults to 3.
        smoothness_weight (float): ``w_smooth``. Defaults to 3.
        smoothness_xy_std (float): ``theta_gamma`` in pixels. Defaults to 3.
        method (str): ``'permutohedral'`` (linear time; default) or ``'exact'``
            (dense kernel matrices, images of at most :data:`EXACT_MAX_PIXELS`
            pixels).
        normalization (str): ``'symmetric'`` (default): each kernel is
            normalised as ``D^-1/2 K D^-1/2`` with ``D = diag(K 1)`` and each
            pixel's own term included, as in the released dense-CRF code that
            DeepLab's weights were tuned with, so a message is a weighted
            average of the neighbours' marginals (in [0, 1]). ``'none'``: the
            raw kernel sums of the energy above (a message grows with the
            number of similar pixels, thousands at theta_alpha = 67, so weights
            must be far smaller).

    Example:
        >>> import torch
        >>> crf = DenseCRF(num_iterations=5)
        >>> logits = torch.randn(2, 4, 30, 40)
        >>> images = torch.rand(2, 3, 30, 40) * 255
        >>> q = crf(logits, images)
        >>> tuple(q.shape), bool(torch.allclose(q.sum(1), torch.ones(2, 30, 40)))
        ((2, 4, 30, 40), True)
    """

    def __init__(self,
                 num_iterations: int = 10,
                 appearance_weight: float = 4.0,
                 appearance_xy_std: float = 67.0,
                 appearance_rgb_std: float = 3.0,
                 smoothness_weight: float = 3.0,
                 smoothness_xy_std: float = 3.0,
                 method: str = 'permutohedral',
                 normalization: str = 'symmetric') -> None:
        super().__init__()
        if (not isinstance(num_iterations, int) or isinstance(num_iterations, bool)
                or num_iterations < 0):
            raise ValueError(
                f'DenseCRF: num_iterations must be a non-negative int, got {num_iterations!r}')
        if method not in METHODS:
            raise ValueError(f'DenseCRF: method must be one of {METHODS}, got {method!r}')
        if normalization not in NORMALIZATIONS:
            raise ValueError(f'DenseCRF: normalization must be one of {NORMALIZATIONS}, '
                             f'got {normalization!r}')
        self.normalization = normalization
        self.num_iterations = num_iterations
        self.appearance_weight = _check_number('appearance_weight', appearance_weight, False)
        self.appearance_xy_std = _check_number('appearance_xy_std', appearance_xy_std, True)
        self.appearance_rgb_std = _check_number('appearance_rgb_std', appearance_rgb_std, True)
        self.smoothness_weight = _check_number('smoothness_weight', smoothness_weight, False)
        self.smoothness_xy_std = _check_number('smoothness_xy_std', smoothness_xy_std, True)
        self.method = method

    def extra_repr(self) -> str:
        return (f'num_iterations={self.num_iterations}, method={self.method!r}, '
                f'normalization={self.normalization!r}, '
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
        """Unweighted messages ``sum_{j != i} k(f_i, f_j) v_j`` of both kernels.

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
        kernels = self._kernels(images, method, dtype, with_appearance=True)
        q = values.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels)
        return tuple(
            m.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
            for m in kernels.messages(q))

    def _symmetric_pairwise(self, kernels, q: Tensor):
        """``q -> sum_k w_k D_k^-1/2 (K_k + I) D_k^-1/2 q``, ``D_k = diag((K_k + I) 1)``.

        The normalisers come from one pass of each kernel over ones, reused by
        every iteration. ``K_k`` excludes each pixel itself; adding ``I``
        restores the self term that the normalised reference keeps.
        """
        ones = q.new_ones(q.shape[0], 1)
        terms = [(kind, weight) for kind, weight in (
            ('appearance', self.appearance_weight), ('smoothness', self.smoothness_weight))
                 if weight > 0]
        norms = {kind: (kernels.apply(kind, ones) + 1).rsqrt() for kind, _ in terms}

        def pairwise(q: Tensor) -> Tensor:
            out = torch.zeros_like(q)
            for kind, weight in terms:
                scaled = q * norms[kind]
                out.addcmul_(kernels.apply(kind, scaled).add_(scaled), norms[kind], value=weight)
            return out

        return pairwise

    def forward(self, logits: Tensor, images: Tensor) -> Tensor:
        """Marginals ``Q`` of shape ``(N, C, H, W)`` (probabilities over ``C``).

        Args:
            logits (Tensor): ``(N, C, H, W)`` class scores at the image's size;
                the unary is ``-log softmax(logits)``.
            images (Tensor): ``(N, 3, H, W)`` RGB images, 0..255 (not
                normalised). The lattice clamps colours to ``[-255, 510]``
                (narrower only when the standard deviations are tiny).

        Returns:
            Tensor: float32 marginals (float64 for float64 logits); all ones
            for a single class.
        """
        self._check_inputs(logits, images, self.method)
        batch, channels, height, width = logits.shape
        dtype = self._compute_dtype(logits)
        if channels == 1:
            return torch.ones(logits.shape, dtype=dtype, device=logits.device)
        # (B * H * W, C) rows: softmax over a contiguous axis, lattice rows
        # without a transpose, and channels_last memory for the blur.
        unary = F.log_softmax(logits.to(dtype).permute(0, 2, 3, 1).reshape(-1, channels), -1)
        q = unary.exp()
        weighted = self.appearance_weight > 0 or self.smoothness_weight > 0
        if self.num_iterations > 0 and weighted:
            kernels = self._kernels(images, self.method, dtype, self.appearance_weight > 0)
            if self.normalization == 'none':
                for _ in range(self.num_iterations):
                    q = torch.softmax(kernels.pairwise(q).add_(unary), -1)
            else:
                pairwise = self._symmetric_pairwise(kernels, q)
                for _ in range(self.num_iterations):
                    q = torch.softmax(pairwise(q).add_(unary), -1)
        return q.view(batch, height, width, channels).permute(0, 3, 1, 2).contiguous()
