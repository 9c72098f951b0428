"""Backbones whose downsampling is learned by shape adaptors (Liu et al., ECCV 2020).

The strided points of the backbone become stride 1, and ``num_adaptors``
:class:`ShapeAdaptor` layers sit between its units (ResNet: residual blocks
after the fixed stride-4 stem; DLA: levels 1-5 after the stride-1 stem and
level 0), spread uniformly and never after the last unit. Their initial
factors multiply to ``base_stride / target_stride``, so the network starts
with its usual overall downsampling and learns where it happens and how much.

Sizes are planned once per forward for all adaptors from one host read of
all alphas, cached until an alpha changes (its version counter moves): one
batched device-to-host copy per training step, none at inference.

``resize_outputs=True`` resizes every returned level to the nominal size
``ceil(input / stride)`` of the original backbone (4, 8, 16, 32 for ResNet), which
anchor generators and RoI extractors assume; without it the levels keep their
learned sizes (fine for segmentation heads, which resize to the image).

A memory limit (``limit_dim``) penalises a final map larger than ``limit_dim``
pixels per side through ``penalty()``; ``ShapeAdaptorFasterRCNN`` (detectors) and
``ShapeAdaptorEncoderDecoder`` (segmentors) add it to their losses as
``loss_shape_limit``.
"""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmplug_agg.models.layers.shape_adaptor import (ShapeAdaptor, alpha_from_factor,
                                                    check_factors, check_size_rule,
                                                    factor_from_alpha, plan_sizes)
from mmplug_agg.registry import register_backbone

from .dla import DLA, NUM_LEVELS

try:
    from mmdet.models.backbones import ResNet as _ResNet
except ImportError:  # mmseg only
    from mmseg.models.backbones import ResNet as _ResNet


def default_num_adaptors(ratio: float, r1: float) -> int:
    """The paper's count, one more than ``log(ratio) / log(1 / r1)``.

    The extra adaptor keeps every initial factor strictly above ``r1``; at
    exactly ``r1`` alpha would have to start at minus infinity.
    """
    return math.floor(math.log(ratio) / math.log(1 / r1) + 1e-9) + 1


def uniform_positions(num_adaptors: int, num_units: int) -> Tuple[int, ...]:
    """Units (1..num_units - 1) that an adaptor precedes, spread evenly."""
    slots = num_units - 1
    return tuple(round((k + 1) * (slots + 1) / (num_adaptors + 1)) for k in range(num_adaptors))


class ShapeAdaptorChainMixin:
    """The adaptor chain shared by the backbones: building, size planning, penalty."""

    nominal_strides: Tuple[int, ...]

    def _build_adaptor_chain(self, *, num_units: int, unit_kind: str, base_stride: int,
                             target_stride: Union[int, float], num_adaptors: Optional[int],
                             adaptor_positions: Optional[Sequence[int]], r1: float, r2: float,
                             alpha_init: Union[None, float, Sequence[float]], size_rule: str,
                             frozen_factors: Optional[Sequence[float]],
                             limit_dim: Optional[int], limit_weight: float,
                             resize_outputs: bool, align_corners: bool) -> None:
        check_factors(r1, r2)
        check_size_rule(size_rule)
        self.r1, self.r2, self.size_rule = float(r1), float(r2), size_rule
        self.resize_outputs = resize_outputs
        self.align_corners = align_corners
        self.limit_weight = float(limit_weight)
        if limit_dim is not None and (not isinstance(limit_dim, int) or limit_dim < 1):
            raise ValueError(f'limit_dim must be a positive int (pixels per side of the final '
                             f'map) or None, got {limit_dim!r}')
        self.limit_dim = limit_dim
        if not isinstance(target_stride, (int, float)) or target_stride <= base_stride:
            raise ValueError(f'target_stride must be larger than the fixed stem stride '
                             f'{base_stride}, got {target_stride!r}')
        self.target_stride = target_stride
        ratio = target_stride / base_stride
        if frozen_factors is not None:
            frozen_factors = [float(f) for f in frozen_factors]
            num_adaptors = len(frozen_factors)
        derived = ''
        if num_adaptors is None:
            if adaptor_positions is not None:
                num_adaptors = len(adaptor_positions)
            else:
                num_adaptors = default_num_adaptors(ratio, r1)
                derived = (f' (derived from target_stride={target_stride} and r1={r1}; lower '
                           'target_stride, or give num_adaptors and alpha_init)')
        slots = num_units - 1
        if not isinstance(num_adaptors, int) or not 1 <= num_adaptors <= slots:
            raise ValueError(f'num_adaptors must be in 1..{slots} (one before each of the '
                             f'{unit_kind} after the first), got {num_adaptors!r}{derived}')
        if adaptor_positions is None:
            positions = uniform_positions(num_adaptors, num_units)
        else:
            positions = tuple(adaptor_positions)
            if (len(positions) != num_adaptors or list(positions) != sorted(set(positions))
                    or any(not isinstance(p, int) or not 1 <= p <= slots for p in positions)):
                raise ValueError(f'adaptor_positions must be {num_adaptors} increasing '
                                 f'{unit_kind} indices in 1..{slots} (an adaptor runs before '
                                 f'that unit), got {adaptor_positions!r}')
        self.adaptor_positions = positions

        if frozen_factors is None:
            if alpha_init is None:
                # Initial factors whose product is the target's overall downsampling.
                init_factor = ratio**(-1 / num_adaptors)
                if not r1 < init_factor < r2:
                    raise ValueError(
                        f'num_adaptors={num_adaptors} cannot reach target_stride='
                        f'{target_stride} from stride {base_stride} with factors in '
                        f'({r1}, {r2}): each would be {init_factor:.3f}. Use more adaptors or '
                        f'another target_stride, or give alpha_init')
                alphas = [alpha_from_factor(init_factor, r1, r2)] * num_adaptors
            elif isinstance(alpha_init, (int, float)):
                alphas = [float(alpha_init)] * num_adaptors
            else:
                alphas = [float(a) for a in alpha_init]
                if len(alphas) != num_adaptors:
                    raise ValueError(f'alpha_init must be a number or one per adaptor '
                                     f'({num_adaptors}), got {alpha_init!r}')
            self.adaptors = nn.ModuleList(
                ShapeAdaptor(r1=r1, r2=r2, alpha_init=a, size_rule=size_rule,
                             align_corners=align_corners) for a in alphas)
        else:
            self.adaptors = nn.ModuleList(
                ShapeAdaptor(r1=r1, r2=r2, size_rule=size_rule, frozen_factor=f,
                             align_corners=align_corners) for f in frozen_factors)
        self._factor_cache: Optional[tuple] = None
        self._last_base_size: Optional[Tuple[int, int]] = None

    @property
    def learnable(self) -> bool:
        return self.adaptors[0].learnable

    def learned_factors(self) -> Tuple[float, ...]:
        """The adaptors' current factors on the host, first to last."""
        if not self.learnable:
            return tuple(a.frozen_factor for a in self.adaptors)
        alphas = [adaptor.alpha for adaptor in self.adaptors]
        # The version counter moves on every in-place update (optimizer step,
        # load_state_dict), so a cached read stays valid until alpha changes.
        key = tuple((id(a), a._version, a.data_ptr()) for a in alphas)
        if self._factor_cache is None or self._factor_cache[0] != key:
            with torch.no_grad():
                values = torch.stack([a.detach() for a in alphas]).double().cpu().tolist()
            self._factor_cache = (key, tuple(factor_from_alpha(v, self.r1, self.r2)
                                             for v in values))
        return self._factor_cache[1]

    def adaptor_sizes(self, base_size: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
        """Output size of every adaptor when the first one's input is ``base_size``."""
        return plan_sizes(self.learned_factors(), tuple(base_size), self.size_rule,
                          who=type(self).__name__)

    def penalty(self) -> Tensor:
        """Memory-limit penalty on the sigmas: zero while the final map fits ``limit_dim``.

        ``limit_weight * relu(log(side) - log(limit_dim))`` with ``side`` the
        geometric-mean side of the last adaptor's output, estimated from the
        last forward's stem size times the product of the factors (as tensors,
        so the gradient reaches every alpha).
        """
        if not self.learnable:
            return next(self.parameters()).new_zeros(())
        alphas = torch.stack([adaptor.alpha for adaptor in self.adaptors])
        if self.limit_dim is None or self._last_base_size is None:
            return alphas.sum() * 0
        factors = (self.r2 - self.r1) * torch.sigmoid(alphas) + self.r1
        height, width = self._last_base_size
        log_side = 0.5 * math.log(height * width) + torch.log(factors).sum()
        return self.limit_weight * F.relu(log_side - math.log(self.limit_dim))

    def _run_chain(self, x: Tensor, units: Sequence[nn.Module],
                   out_units: Sequence[int]) -> List[Tensor]:
        """Run ``units`` with the adaptors in between; return the outputs of ``out_units``."""
        self._last_base_size = tuple(x.shape[-2:])
        sizes = self.adaptor_sizes(self._last_base_size)
        positions = dict(zip(self.adaptor_positions, range(len(sizes))))
        outs = []
        for index, unit in enumerate(units):
            if index in positions:
                k = positions[index]
                x = self.adaptors[k](x, sizes[k])
            x = unit(x)
            if index in out_units:
                outs.append(x)
        return outs

    def _finish(self, outs: List[Tensor], input_size: Sequence[int],
                levels: Sequence[int]) -> Tuple[Tensor, ...]:
        if not self.resize_outputs:
            return tuple(outs)
        resized = []
        for out, level in zip(outs, levels):
            stride = self.nominal_strides[level]
            size = (math.ceil(input_size[0] / stride), math.ceil(input_size[1] / stride))
            if tuple(out.shape[-2:]) != size:
                out = F.interpolate(out, size=size, mode='bilinear',
                                    align_corners=self.align_corners)
            resized.append(out)
        return tuple(resized)


@register_backbone
class ShapeAdaptorResNet(ShapeAdaptorChainMixin, _ResNet):
    """ResNet whose stride-2 stages become stride 1, with shape adaptors between blocks.

    The stem (conv, max-pool: stride 4) stays fixed; the adaptors sit between
    residual blocks (never after the last one) and learn the remaining
    downsampling. All of mmdet's ResNet arguments apply except ``strides``
    and ``dilations`` (all 1 here).

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        out_indices (Sequence[int]): Stages to return. Defaults to (0, 1, 2, 3).
        frozen_stages, norm_cfg, norm_eval, with_cp, init_cfg, ...: As in
            mmdet's ``ResNet``.
        num_adaptors (int, optional): Number of adaptors. Defaults to the
            paper's ``floor(log(target_stride / base) / log(1 / r1)) + 1``.
        target_stride (int | float): Overall stride that the initial factors
            multiply to. Defaults to 32.
        adaptor_positions (Sequence[int], optional): Units an adaptor runs
            before (1-based slots between units). Defaults to uniform spread.
        r1 (float): Factor of the low branch. Defaults to 0.5.
        r2 (float): Factor of the high branch. Defaults to 1.0.
        alpha_init (float | Sequence[float], optional): Initial alphas instead
            of the ones derived from ``target_stride``.
        size_rule (str): ``'local'`` or ``'global'`` (see ``plan_sizes``).
        frozen_factors (Sequence[float], optional): Fixed factors, one per
            adaptor: no alphas (what the export tool writes).
        limit_dim (int, optional): Cap on the final map's side in pixels,
            enforced by ``penalty()``. Defaults to None (no limit).
        limit_weight (float): Weight of the penalty. Defaults to 1.
        resize_outputs (bool): Resize each output to the nominal stride's
            ``ceil(input / stride)`` size (for anchors and RoI extractors).
            Defaults to False.
        align_corners (bool): Of every bilinear resize. Defaults to False.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.backbones import ShapeAdaptorResNet
        >>> model = ShapeAdaptorResNet(depth=18, base_channels=8, resize_outputs=True).eval()
        >>> [round(s, 3) for s in model.learned_factors()]
        [0.595, 0.595, 0.595, 0.595]
        >>> for feat in model(torch.rand(1, 3, 333, 517)):
        ...     print(tuple(feat.shape))
        (1, 8, 84, 130)
        (1, 16, 42, 65)
        (1, 32, 21, 33)
        (1, 64, 11, 17)
    """

    def __init__(self,
                 depth: int,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 num_adaptors: Optional[int] = None,
                 target_stride: Union[int, float] = 32,
                 adaptor_positions: Optional[Sequence[int]] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 alpha_init: Union[None, float, Sequence[float]] = None,
                 size_rule: str = 'local',
                 frozen_factors: Optional[Sequence[float]] = None,
                 limit_dim: Optional[int] = None,
                 limit_weight: float = 1.0,
                 resize_outputs: bool = False,
                 align_corners: bool = False,
                 **kwargs) -> None:
        for name in ('strides', 'dilations'):
            value = kwargs.pop(name, None)
            if value is not None and any(v != 1 for v in value):
                raise ValueError(f'{name} must stay 1 in ShapeAdaptorResNet (the adaptors do '
                                 f'the downsampling), got {name}={value}')
        num_stages = kwargs.get('num_stages', 4)
        super().__init__(depth, out_indices=out_indices, strides=(1, ) * num_stages,
                         dilations=(1, ) * num_stages, **kwargs)
        self.nominal_strides = tuple(4 * 2**i for i in range(num_stages))
        self._stage_ends = []
        num_units = 0
        for name in self.res_layers:
            num_units += len(getattr(self, name))
            self._stage_ends.append(num_units - 1)
        self._build_adaptor_chain(
            num_units=num_units, unit_kind='residual blocks', base_stride=4,
            target_stride=target_stride, num_adaptors=num_adaptors,
            adaptor_positions=adaptor_positions, r1=r1, r2=r2, alpha_init=alpha_init,
            size_rule=size_rule, frozen_factors=frozen_factors, limit_dim=limit_dim,
            limit_weight=limit_weight, resize_outputs=resize_outputs,
            align_corners=align_corners)

    def train(self, mode: bool = True) -> 'ShapeAdaptorResNet':
        # mmdet's ResNet.train returns None, which would break model.eval() chains.
        super().train(mode)
        return self

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        input_size = tuple(x.shape[-2:])
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x)
        units = [block for name in self.res_layers for block in getattr(self, name)]
        out_units = [self._stage_ends[i] for i in self.out_indices]
        outs = self._run_chain(x, units, out_units)
        return self._finish(outs, input_size, sorted(self.out_indices))


@register_backbone
class ShapeAdaptorDLA(ShapeAdaptorChainMixin, DLA):
    """DLA whose levels all run at stride 1, with shape adaptors between levels.

    The stem and level 0 keep the input resolution (as in DLA); adaptors run
    before some of levels 1 up to the deepest returned level (5 slots for
    ``out_indices`` reaching level 5), so ``target_stride`` defaults to 16:
    32 would need six adaptors at r1 = 0.5. ``output_stride``, ``strides``
    and ``dilations`` are not accepted (all 1 here).

    Args:
        arch (str): A ``DLA_ARCHS`` name. Defaults to ``'dla34'``.
        out_indices (Sequence[int]): Levels to return. Defaults to (2, 3, 4, 5).
        frozen_stages, norm_cfg, norm_eval, with_cp, init_cfg, ...: As in
            :class:`DLA`.
        target_stride (int | float): Overall stride that the initial factors
            multiply to. Defaults to 16.
        num_adaptors, adaptor_positions, r1, r2, alpha_init, size_rule,
            frozen_factors, limit_dim, limit_weight, resize_outputs,
            align_corners: As in :class:`ShapeAdaptorResNet`; the units are the
            levels and the nominal strides 1, 2, 4, 8, 16, 32.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.backbones import ShapeAdaptorDLA
        >>> model = ShapeAdaptorDLA(channels=(4, 8, 8, 16, 16, 32), resize_outputs=True).eval()
        >>> for feat in model(torch.rand(1, 3, 133, 117)):
        ...     print(tuple(feat.shape))
        (1, 8, 34, 30)
        (1, 16, 17, 15)
        (1, 16, 9, 8)
        (1, 32, 5, 4)
    """

    def __init__(self,
                 arch: Optional[str] = 'dla34',
                 out_indices: Sequence[int] = (2, 3, 4, 5),
                 num_adaptors: Optional[int] = None,
                 target_stride: Union[int, float] = 16,
                 adaptor_positions: Optional[Sequence[int]] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 alpha_init: Union[None, float, Sequence[float]] = None,
                 size_rule: str = 'local',
                 frozen_factors: Optional[Sequence[float]] = None,
                 limit_dim: Optional[int] = None,
                 limit_weight: float = 1.0,
                 resize_outputs: bool = False,
                 align_corners: bool = False,
                 **kwargs) -> None:
        for name in ('output_stride', 'strides', 'dilations'):
            if kwargs.pop(name, None) is not None:
                raise ValueError(f'ShapeAdaptorDLA takes no {name}: every level runs at '
                                 f'stride 1 and the adaptors do the downsampling')
        super().__init__(arch, out_indices=out_indices, strides=(1, ) * NUM_LEVELS,
                         dilations=(1, ) * NUM_LEVELS, **kwargs)
        self.nominal_strides = tuple(2**i for i in range(NUM_LEVELS))
        self._build_adaptor_chain(
            num_units=max(self.out_indices) + 1, unit_kind='levels', base_stride=1,
            target_stride=target_stride, num_adaptors=num_adaptors,
            adaptor_positions=adaptor_positions, r1=r1, r2=r2, alpha_init=alpha_init,
            size_rule=size_rule, frozen_factors=frozen_factors, limit_dim=limit_dim,
            limit_weight=limit_weight, resize_outputs=resize_outputs,
            align_corners=align_corners)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        input_size = tuple(x.shape[-2:])
        x = self.base_layer(x)
        units = [getattr(self, f'level{i}') for i in range(max(self.out_indices) + 1)]
        outs = self._run_chain(x, units, self.out_indices)
        return self._finish(outs, input_size, sorted(self.out_indices))


def add_shape_limit_loss(losses: dict, backbone: nn.Module) -> dict:
    """Add ``loss_shape_limit`` (the backbone's ``penalty()``) when it sets ``limit_dim``."""
    if isinstance(backbone, ShapeAdaptorChainMixin) and backbone.limit_dim is not None:
        losses['loss_shape_limit'] = backbone.penalty()
    return losses
