"""Shape Adaptor (Liu et al., "Shape Adaptor: A Learnable Resizing Module", ECCV 2020).

A shape adaptor mixes two resizing branches with fixed factors ``r1 < r2``
through one learnable scalar ``alpha``::

    sigma = sigmoid(alpha)
    s = (r2 - r1) * sigma + r1
    out = (1 - sigma) * G(F1(x)) + sigma * G(F2(x))        (x2 in residual cells)

where ``G`` resizes bilinearly (``align_corners=True``, as the official code)
to the size that ``s`` gives. The size itself is an integer, so it carries no
gradient; ``alpha`` learns through the mixing weights, which tell it which
branch (the smaller or the larger map) the loss prefers.

A hard memory cap rescales a chain of ``n`` adaptors by ``p = (limit / dim) ** (1 / n)``
when its final size ``dim`` would exceed ``limit``: every factor becomes
``p * s`` and every mixing weight ``p * sigma + r1 / (r2 - r1) * (p - 1)``
(the weight that gives the factor ``p * s``), so the final map lands on the
limit; ``scale`` carries ``p`` into :meth:`ShapeAdaptor.forward`.

Integer sizes need ``s`` on the host. A standalone adaptor reads its own
``alpha`` when it is given no size (one device sync); the backbones plan the
sizes of all their adaptors at once (:func:`plan_chain`) from one batched,
cached read of all alphas and pass each adaptor its size and scale.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmplug_agg.registry import register_layer

SIZE_RULES = ('local', 'global')
BRANCHES = ('pool', 'conv', 'external')
# A chain step: ('adaptor', index) resizes by the adaptor's factor, ('stride', k)
# is a fixed stride-k layer (a human-designed downsampling point, AutoSC).
ChainStep = Tuple[str, int]


def check_factors(r1: float, r2: float) -> None:
    """Raise ``ValueError`` unless ``0 < r1 < r2 <= 1``."""
    for name, value in (('r1', r1), ('r2', r2)):
        if not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f'{name} must be a resizing factor in (0, 1], got {value!r}')
    if r1 >= r2:
        raise ValueError(f'r1 must be smaller than r2 (r1 < r2, both in (0, 1]), got r1={r1}, '
                         f'r2={r2}')


def check_size_rule(size_rule: str) -> None:
    if size_rule not in SIZE_RULES:
        raise ValueError(f'size_rule must be one of {SIZE_RULES}, got {size_rule!r}')


def factor_from_alpha(alpha: float, r1: float, r2: float) -> float:
    return (r2 - r1) / (1 + math.exp(-alpha)) + r1


def alpha_from_factor(factor: float, r1: float, r2: float, who: str = 'factor') -> float:
    """The ``alpha`` whose factor is ``factor``; it must lie strictly inside (r1, r2)."""
    if not r1 < factor < r2:
        raise ValueError(f'{who}={factor:.4g} must lie strictly between r1={r1} and r2={r2} '
                         f'(sigmoid never reaches its ends)')
    sigma = (factor - r1) / (r2 - r1)
    return math.log(sigma / (1 - sigma))


def cap_scale(final_side: float, limit_dim: Optional[int], num_adaptors: int) -> float:
    """The hard cap's ``p``: 1 while ``final_side <= limit_dim``, else ``(limit/side)^(1/n)``."""
    if limit_dim is None or num_adaptors == 0 or final_side <= limit_dim:
        return 1.0
    return (limit_dim / final_side)**(1 / num_adaptors)


def plan_chain(factors: Sequence[float],
               steps: Sequence[ChainStep],
               in_size: Tuple[int, int],
               size_rule: str = 'local',
               who: str = 'ShapeAdaptor') -> Tuple[List[Tuple[int, int]], Tuple[int, int]]:
    """Sizes along a chain of adaptors and fixed strided layers.

    ``steps`` lists the resizing points in forward order. ``'local'`` floors
    each adaptor's factor times its own input size; ``'global'`` rounds
    ``in_size`` times the product of every factor so far (fixed strides count
    as ``1 / k``), so rounding errors do not pile up. A fixed stride-k layer
    gives ``ceil(size / k)`` (a padded strided conv). Between the points maps
    keep their size; no side goes below 1 px (the official clamp). Returns the output
    size of every adaptor (by index) and the size after the last step.
    """
    check_size_rule(size_rule)
    sizes: List[Optional[Tuple[int, int]]] = [None] * len(factors)
    height, width = in_size
    product = 1.0
    for kind, value in steps:
        if kind == 'stride':
            product /= value
            height, width = math.ceil(height / value), math.ceil(width / value)
            continue
        factor = factors[value]
        product *= factor
        if size_rule == 'local':
            height, width = math.floor(height * factor), math.floor(width * factor)
        else:
            height, width = round(in_size[0] * product), round(in_size[1] * product)
        # At least one pixel, as the official code: any input size runs.
        height, width = max(height, 1), max(width, 1)
        sizes[value] = (height, width)
    return sizes, (height, width)


def plan_sizes(factors: Sequence[float],
               in_size: Tuple[int, int],
               size_rule: str = 'local',
               who: str = 'ShapeAdaptor') -> Tuple[Tuple[int, int], ...]:
    """Output size of each adaptor of a chain (no fixed strides) whose first one sees
    ``in_size``; see :func:`plan_chain`."""
    steps = [('adaptor', k) for k in range(len(factors))]
    return tuple(plan_chain(factors, steps, in_size, size_rule, who)[0])


@register_layer
class ShapeAdaptor(BaseModule):
    """Learnable resizing: two fixed-factor branches mixed by ``sigmoid(alpha)``.

    The low branch ``F1`` shrinks by about ``r1`` (max-pooling, or a strided
    3x3 conv), the high branch ``F2`` keeps the map (identity, or a 3x3 conv);
    with ``branch='external'`` the caller computes both (a residual cell's
    strided shortcut and its stride-1 weight layers) and :meth:`mix` mixes
    them. Both are bilinearly resized to the size the learned factor ``s``
    gives and mixed with weights ``1 - sigma`` and ``sigma``. Any input size
    works, rectangular or odd: every branch lands on the exact target size.

    Args:
        in_channels (int, optional): Input channels; needed by
            ``branch='conv'`` only.
        r1 (float): Factor of the low branch, in (0, 1). Defaults to 0.5.
        r2 (float): Factor of the high branch, in (r1, 1]. Defaults to 1.0.
        alpha_init (float): Initial ``alpha`` (0 gives ``s = (r1 + r2) / 2``).
            Ignored with ``frozen_factor``. Defaults to 0.
        size_rule (str): ``'local'`` (floor of ``s`` times the input size) or
            ``'global'`` (see :func:`plan_chain`; alone, the adaptor takes its
            input as the chain's input, so it rounds). Defaults to ``'local'``.
        branch (str): ``'pool'`` (max-pooling with kernel and stride
            ``ceil(1 / r1)`` against identity; no parameters), ``'conv'``
            (strided 3x3 conv against a 3x3 conv) or ``'external'`` (no
            branches of its own; use :meth:`mix`). Defaults to ``'pool'``.
        residual (bool): Scale the mixture by 2, the paper's form for adaptors
            inside residual cells (no identity add). Defaults to False.
        frozen_factor (float, optional): A fixed factor in (r1, r2) instead of a
            learned one: no ``alpha``; the mix keeps the weight ``sigma`` of
            that factor as a constant, so the frozen adaptor computes what the
            learned one did (what ``tools/misc/export_shape_adaptor.py``
            writes). Defaults to None.
        align_corners (bool): Of the bilinear resize. Defaults to True (the
            official code's).
        conv_cfg (dict, optional): Conv config of ``branch='conv'``.
        norm_cfg (dict, optional): Norm config of ``branch='conv'``.
            Defaults to BN.
        act_cfg (dict, optional): Activation of ``branch='conv'``.
            Defaults to ReLU.
        init_cfg (dict | list[dict], optional): Initialization config.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.layers import ShapeAdaptor
        >>> adaptor = ShapeAdaptor(r1=0.5, r2=1.0, alpha_init=0.0)
        >>> round(adaptor.factor(), 2)
        0.75
        >>> tuple(adaptor(torch.rand(2, 8, 333, 517)).shape)
        (2, 8, 249, 387)
        >>> tuple(adaptor(torch.rand(2, 8, 333, 517), out_size=(100, 150)).shape)
        (2, 8, 100, 150)
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 alpha_init: float = 0.0,
                 size_rule: str = 'local',
                 branch: str = 'pool',
                 residual: bool = False,
                 frozen_factor: Optional[float] = None,
                 align_corners: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        check_factors(r1, r2)
        check_size_rule(size_rule)
        if branch not in BRANCHES:
            raise ValueError(f'branch must be one of {BRANCHES}, got {branch!r}')
        self.r1, self.r2 = float(r1), float(r2)
        self.size_rule = size_rule
        self.branch = branch
        self.residual = residual
        self.align_corners = align_corners
        self.frozen_factor = None
        if frozen_factor is not None:
            if not isinstance(frozen_factor, (int, float)) or not r1 < frozen_factor < r2:
                raise ValueError(f'frozen_factor must be a factor strictly between r1={r1} and '
                                 f'r2={r2}, got {frozen_factor!r}')
            self.frozen_factor = float(frozen_factor)
        else:
            if not isinstance(alpha_init, (int, float)) or not math.isfinite(alpha_init):
                raise ValueError(f'alpha_init must be a finite number, got {alpha_init!r}')
            self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))
        # A stride of ceil(1 / r1) shrinks at least as much as r1 asks, so the
        # two branches differ even for r1 close to 1.
        low_stride = max(2, math.ceil(1 / self.r1 - 1e-6))
        if branch == 'pool':
            self.low = nn.MaxPool2d(low_stride, low_stride, ceil_mode=True)
            self.high = nn.Identity()
        elif branch == 'conv':
            if not isinstance(in_channels, int) or in_channels < 1:
                raise ValueError(f"branch='conv' needs in_channels (a positive int), got "
                                 f'{in_channels!r}')
            conv = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
            self.low = ConvModule(in_channels, in_channels, 3, stride=low_stride, padding=1,
                                  **conv)
            self.high = ConvModule(in_channels, in_channels, 3, padding=1, **conv)

    @property
    def learnable(self) -> bool:
        return self.frozen_factor is None

    def sigma(self, scale: float = 1.0) -> Union[Tensor, float]:
        """The mixing weight of the high branch (differentiable in ``alpha``).

        ``scale`` is the memory cap's ``p``: the weight whose factor is ``p * s``.
        A frozen adaptor's weight is a Python float (a constant, no device copy).
        """
        if self.learnable:
            sigma = torch.sigmoid(self.alpha)
        else:
            sigma = (self.frozen_factor - self.r1) / (self.r2 - self.r1)
        if scale == 1.0:
            return sigma
        return sigma * scale + self.r1 / (self.r2 - self.r1) * (scale - 1)

    def factor(self) -> float:
        """The current factor ``s`` on the host (reads ``alpha``: a device sync)."""
        if not self.learnable:
            return self.frozen_factor
        return factor_from_alpha(float(self.alpha.detach()), self.r1, self.r2)

    def output_size(self, in_size: Sequence[int],
                    factor: Optional[float] = None) -> Tuple[int, int]:
        """The size of the output for an input of ``in_size`` under ``size_rule``."""
        factor = self.factor() if factor is None else factor
        return plan_sizes([factor], tuple(in_size), self.size_rule, who=type(self).__name__)[0]

    def _resize(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode='bilinear', align_corners=self.align_corners)

    def mix(self, low: Tensor, high: Tensor, out_size: Sequence[int],
            scale: float = 1.0) -> Tensor:
        """``(1 - sigma) G(low) + sigma G(high)`` at ``out_size`` (x2 when ``residual``)."""
        size = tuple(out_size)
        sigma = self.sigma(scale)
        if isinstance(sigma, Tensor):
            sigma = sigma.to(high.dtype)
        if self.residual:  # two of every term, as a residual sum of two paths
            sigma = 2 * sigma
            return (2 - sigma) * self._resize(low, size) + sigma * self._resize(high, size)
        return (1 - sigma) * self._resize(low, size) + sigma * self._resize(high, size)

    def forward(self, x: Tensor, out_size: Optional[Sequence[int]] = None,
                scale: float = 1.0) -> Tensor:
        """Resize ``x`` (N, C, H, W); ``out_size`` skips the host read of ``alpha``."""
        if self.branch == 'external':
            raise RuntimeError("ShapeAdaptor(branch='external') has no branches: call "
                               'mix(low, high, out_size) with both')
        if out_size is None:
            out_size = self.output_size(x.shape[-2:], self.factor() * scale)
        return self.mix(self.low(x), self.high(x), out_size, scale)

    def extra_repr(self) -> str:
        head = (f'frozen_factor={self.frozen_factor:.4f}, '
                if not self.learnable else '')
        return (f'{head}r1={self.r1}, r2={self.r2}, branch={self.branch!r}, '
                f'size_rule={self.size_rule!r}, residual={self.residual}')
