"""Backbones whose downsampling is learned by shape adaptors (Liu et al., ECCV 2020).

``ShapeAdaptorResNet`` builds the paper's ResNet by default
(``adaptor_type='residual'``): inside a residual cell the two resizing
branches are the cell's own paths, the strided 1x1 conv + norm shortcut
(factor ``r1 = 0.5``) and the weight layers run at stride 1 (``r2 = 1``),
mixed as ``2 (1 - sigma) G(shortcut) + 2 sigma G(weights)`` (no identity add)
and then the block's ReLU. The stem conv runs at stride 1 and a max-pool vs
identity adaptor follows it (``learnable_stem``). Three modes, as the
official code:

* ``'standard'``: only adaptors resize; their count comes from the output
  stride (``count_rule='target_stride'``, the default for detection and
  segmentation) or from the training input size
  (``count_rule='input_size'``, the official ``int(log2(input_size / 2))``),
  placed at the stem and then at blocks ``int(i * gap)``, never at the last
  one, with initial factors that multiply to ``1 / target_stride``;
* ``'autotl'`` (pretrained networks): adaptors exactly at the network's
  strided points (two at the stem, one at each stride-2 stage start),
  initialised at ``s = 0.55`` (alpha -2.19), so ImageNet weights keep their meaning;
* ``'autosc'``: the human network with its strides, plus adaptors in
  non-downsampling blocks, initialised at ``s = 0.95`` (alpha 2.19), ``'global'``
  size rule.

``adaptor_type='pool'`` keeps the earlier variant: parameter-free max-pool vs
identity adaptors between unchanged blocks after a fixed stride-4 stem.

Sizes are planned once per forward for all adaptors from one host read of
all alphas, cached until an alpha changes (its version counter moves): one
batched device-to-host copy per forward that follows an alpha change, none
otherwise. ``limit_dim`` is a hard cap by default: when the final map would
be larger than ``limit_dim`` pixels per side, every factor and mixing weight
is rescaled by ``p = (limit_dim / side) ** (1 / n)`` in that forward, so the map
never exceeds it (``limit_type='loss'`` keeps the earlier soft penalty).

``resize_outputs=True`` resizes every returned level to the nominal size
``ceil(input / stride)`` of the original backbone (4, 8, 16, 32 for ResNet), which
anchor generators and RoI extractors assume; without it the levels keep their
learned sizes (fine for segmentation heads, which resize to the image).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_conv_layer, build_norm_layer
from torch import Tensor, nn

from mmplug_agg.models.layers.shape_adaptor import (ChainStep, ShapeAdaptor, alpha_from_factor,
                                                    cap_scale, check_factors, check_size_rule,
                                                    factor_from_alpha, plan_chain)
from mmplug_agg.registry import register_backbone

from .dla import DLA, NUM_LEVELS

try:
    from mmdet.models.backbones import ResNet as _ResNet
    from mmdet.models.backbones import ResNeXt as _ResNeXt
    from mmdet.models.backbones.resnet import Bottleneck as _Bottleneck
except ImportError:  # mmseg only
    from mmseg.models.backbones import ResNet as _ResNet
    from mmseg.models.backbones import ResNeXt as _ResNeXt
    from mmseg.models.backbones.resnet import Bottleneck as _Bottleneck

ADAPTOR_TYPES = ('residual', 'pool')
MODES = ('standard', 'autotl', 'autosc')
COUNT_RULES = ('target_stride', 'input_size')
LIMIT_TYPES = ('hard', 'loss')
# The official initial alphas of AutoTL (s = 0.55) and AutoSC (s = 0.95), r1 = 0.5, r2 = 1.
AUTOTL_ALPHA = -2.19
AUTOSC_ALPHA = 2.19


def _check_choice(name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {tuple(choices)}, got {value!r}')


def default_num_adaptors(ratio: float, r1: float) -> int:
    """The target-stride count, one more than ``log(ratio) / log(1 / r1)``.

    The extra adaptor keeps every initial factor strictly above ``r1``; at
    exactly ``r1`` alpha would have to start at minus infinity.
    """
    return math.floor(math.log(ratio) / math.log(1 / r1) + 1e-9) + 1


def input_size_num_adaptors(input_size: float) -> int:
    """The official heuristic on the (training) input size: ``int(log2(input_size / 2))``."""
    return int(math.log2(input_size / 2))


def official_positions(num_adaptors: int, num_units: int) -> Tuple[int, ...]:
    """Units ``int(i * gap)`` (``gap = num_units / num_adaptors``), the official spread."""
    gap = num_units / num_adaptors
    return tuple(int(i * gap) for i in range(num_adaptors))


def uniform_positions(num_adaptors: int, num_units: int) -> Tuple[int, ...]:
    """Units (1..num_units - 1) that an adaptor precedes, spread evenly."""
    slots = num_units - 1
    return tuple(round((k + 1) * (slots + 1) / (num_adaptors + 1)) for k in range(num_adaptors))


def equal_factor_alphas(num_adaptors: int, ratio: float, r1: float, r2: float,
                        must_reach: bool, target: str, valid: str) -> List[float]:
    """Initial alphas giving every adaptor the factor ``ratio ** (-1 / n)`` (official
    ``SA_init``); one clear error when that factor lies outside (r1, r2) and no alphas
    are given."""
    init_factor = ratio**(-1 / num_adaptors)
    reachable = r1 < init_factor < r2
    if must_reach and not reachable:
        raise ValueError(
            f'num_adaptors={num_adaptors} cannot reach {target} with factors in ({r1}, {r2}): '
            f'each would be {init_factor:.3f}; valid: {valid}, another target_stride, or '
            'alpha_init')
    alpha = alpha_from_factor(init_factor, r1, r2) if reachable else 0.0
    return [alpha] * num_adaptors


def residual_path(block: nn.Module, x: Tensor) -> Tensor:
    """An mmdet ``BasicBlock``/``Bottleneck``'s weight layers, without the add and ReLU."""
    out = block.relu(block.norm1(block.conv1(x)))
    if isinstance(block, _Bottleneck):
        if block.with_plugins:
            out = block.forward_plugin(out, block.after_conv1_plugin_names)
        out = block.relu(block.norm2(block.conv2(out)))
        if block.with_plugins:
            out = block.forward_plugin(out, block.after_conv2_plugin_names)
        out = block.norm3(block.conv3(out))
        if block.with_plugins:
            out = block.forward_plugin(out, block.after_conv3_plugin_names)
        return out
    return block.norm2(block.conv2(out))


class ShapeAdaptorChainMixin:
    """The adaptor chain shared by the backbones: size planning, hard cap, penalty.

    Subclasses set ``adaptors`` (a ``ModuleList``) and ``_steps`` (the chain's
    resizing points from the input image, see ``plan_chain``) and call
    :meth:`_init_chain`.
    """

    nominal_strides: Tuple[int, ...]
    adaptors: nn.ModuleList
    _steps: List[ChainStep]

    def _init_chain(self, *, r1: float, r2: float, size_rule: str, limit_dim: Optional[int],
                    limit_type: str, limit_weight: float, resize_outputs: bool,
                    align_corners: bool) -> None:
        self.r1, self.r2, self.size_rule = float(r1), float(r2), size_rule
        self.limit_dim, self.limit_type = limit_dim, limit_type
        self.limit_weight = float(limit_weight)
        self.resize_outputs = resize_outputs
        self.align_corners = align_corners
        self._factor_cache: Optional[tuple] = None
        self._last_input_size: Optional[Tuple[int, int]] = None
        self.last_plan: Optional[dict] = None

    @staticmethod
    def _check_common(r1, r2, size_rule, limit_dim, limit_type) -> None:
        check_factors(r1, r2)
        check_size_rule(size_rule)
        _check_choice('limit_type', limit_type, LIMIT_TYPES)
        if limit_dim is not None and (isinstance(limit_dim, bool) or not isinstance(limit_dim, int)
                                      or limit_dim < 1):
            raise ValueError(f'limit_dim must be a positive int (pixels per side of the final '
                             f'map, >= 1) or None, got {limit_dim!r}')

    def _make_alphas(self, alpha_init, default: Sequence[float]) -> List[float]:
        if alpha_init is None:
            return list(default)
        if isinstance(alpha_init, (int, float)):
            return [float(alpha_init)] * len(default)
        alphas = [float(a) for a in alpha_init]
        if len(alphas) != len(default):
            raise ValueError(f'alpha_init must be a number or one per adaptor '
                             f'({len(default)}), got {alpha_init!r}')
        return alphas

    def _make_adaptors(self, alphas: Sequence[float], kinds: Sequence[str],
                       frozen_factors: Optional[Sequence[float]], r1: float, r2: float,
                       size_rule: str, align_corners: bool) -> nn.ModuleList:
        """One adaptor per kind: ``'pool'`` (max-pool vs identity) or ``'residual'``."""
        if frozen_factors is not None:
            frozen = [float(f) for f in frozen_factors]
            if len(frozen) != len(kinds):
                raise ValueError(f'frozen_factors must give one factor per adaptor '
                                 f'({len(kinds)}), got {len(frozen)}')
        adaptors = []
        for k, kind in enumerate(kinds):
            branch = dict(branch='external', residual=True) if kind == 'residual' else dict(
                branch='pool')
            extra = (dict(frozen_factor=frozen[k]) if frozen_factors is not None else dict(
                alpha_init=alphas[k]))
            adaptors.append(ShapeAdaptor(r1=r1, r2=r2, size_rule=size_rule,
                                         align_corners=align_corners, **branch, **extra))
        return nn.ModuleList(adaptors)

    @property
    def learnable(self) -> bool:
        return self.adaptors[0].learnable

    def learned_factors(self) -> Tuple[float, ...]:
        """The adaptors' current factors on the host, first to last (before any cap)."""
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

    def plan(self, input_size: Sequence[int]) -> Tuple[List[Tuple[int, int]], float]:
        """Each adaptor's output size for an input image of ``input_size``, and the cap's ``p``.

        With the hard cap, ``p = (limit_dim / side) ** (1 / n)`` for a final side
        ``side = max(input_size) * product of all factors`` above ``limit_dim``;
        if rounding still leaves the final map a pixel too large, ``p`` shrinks
        until it fits (host arithmetic only).
        """
        input_size = tuple(int(v) for v in input_size)
        factors = self.learned_factors()
        who = type(self).__name__
        scale = 1.0
        if self.limit_dim is not None and self.limit_type == 'hard':
            product = math.prod(factors) / math.prod(v for k, v in self._steps if k == 'stride')
            scale = cap_scale(max(input_size) * product, self.limit_dim, len(factors))
        while True:
            scaled = [f * scale for f in factors]
            sizes, final = plan_chain(scaled, self._steps, input_size, self.size_rule, who)
            if scale == 1.0 or self.limit_type != 'hard' or max(final) <= self.limit_dim:
                break
            scale *= (self.limit_dim / (max(final) + 0.5))**(1 / len(factors))
        self._last_input_size = input_size
        self.last_plan = dict(input_size=input_size, sizes=sizes, final_size=final,
                              scale=scale, factors=tuple(scaled))
        return sizes, scale

    def penalty(self) -> Tensor:
        """The soft memory limit (``limit_type='loss'``): zero while the final map fits.

        ``limit_weight * relu(log(side) - log(limit_dim))`` with ``side`` the
        geometric-mean side of the final map, estimated from the last
        forward's input size times the product of the factors (as tensors, so
        the gradient reaches every alpha). Zero with the hard cap.
        """
        anchor = next(iter(self.parameters()))
        if not self.learnable:
            return anchor.new_zeros(())
        alphas = torch.stack([adaptor.alpha for adaptor in self.adaptors])
        if (self.limit_dim is None or self.limit_type != 'loss'
                or self._last_input_size is None):
            return alphas.sum() * 0
        factors = (self.r2 - self.r1) * torch.sigmoid(alphas) + self.r1
        fixed = math.prod(v for k, v in self._steps if k == 'stride')
        height, width = self._last_input_size
        log_side = (0.5 * math.log(height * width) - math.log(fixed) + torch.log(factors).sum())
        return self.limit_weight * F.relu(log_side - math.log(self.limit_dim))

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
    """ResNet whose downsampling is learned by shape adaptors (the paper's form by default).

    All of mmdet's ResNet arguments apply (``deep_stem``/``avg_down`` give
    the V1c/V1d forms, ``style``, ``frozen_stages``, ``norm_cfg``, ``with_cp``,
    plugins, DCN, ``init_cfg``...). ``strides`` are the human strides: they
    must stay 1 in ``'standard'`` mode (adaptors do all the resizing), mark
    the strided points in ``'autotl'`` and are kept in ``'autosc'``;
    ``dilations`` must stay 1.

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        out_indices (Sequence[int]): Stages to return. Defaults to (0, 1, 2, 3).
        adaptor_type (str): ``'residual'`` (the paper's in-block adaptors) or
            ``'pool'`` (max-pool vs identity between blocks, after a fixed
            stride-4 stem). Defaults to ``'residual'``.
        mode (str): ``'standard'``, ``'autotl'`` or ``'autosc'`` (see the
            module docstring). Defaults to ``'standard'``.
        learnable_stem (bool, optional): Stem conv at stride 1 followed by
            max-pool vs identity adaptors (one in ``'standard'``, two in
            ``'autotl'``), as the paper; False keeps the stride-4 stem.
            Defaults to True for ``'residual'`` in ``'standard'``/``'autotl'``,
            False otherwise (``'pool'`` and ``'autosc'`` keep the stem).
        num_adaptors (int, optional): Number of adaptors (stem ones included).
            Defaults to the ``count_rule``'s (``'standard'``), the number of
            strided points (``'autotl'``) or the official 4 (2 when
            ``input_size <= 64``) capped at the eligible blocks (``'autosc'``).
        count_rule (str): ``'target_stride'`` (``floor(log(target_stride /
            base) / log(1 / r1)) + 1``) or ``'input_size'`` (the official
            ``int(log2(input_size / base / 2))``; needs ``input_size``).
            Defaults to ``'target_stride'``.
        input_size (int, optional): Side of the training input, for
            ``count_rule='input_size'`` and the AutoSC count.
        target_stride (int | float): Overall stride the initial factors
            multiply to (``'standard'``). Defaults to 32.
        adaptor_positions (Sequence[int], optional): Block indices (0-based
            over all blocks): the residual cells that adapt
            (``'residual'``, stem adaptors excluded) or the blocks an adaptor
            runs before (``'pool'``). Defaults to the official placement
            (``'residual'``) or a uniform spread (``'pool'``).
        r1 (float): Factor of the low branch. Defaults to 0.5.
        r2 (float): Factor of the high branch. Defaults to 1.0.
        alpha_init (float | Sequence[float], optional): Initial alphas instead
            of the mode's (target-derived, -2.19 AutoTL, 2.19 AutoSC).
        size_rule (str, optional): ``'local'`` or ``'global'``. Defaults to
            ``'global'`` in AutoSC, ``'local'`` otherwise (the official).
        frozen_factors (Sequence[float], optional): Fixed factors, one per
            adaptor: no alphas; the adaptors mix with the constant weights of
            those factors (what the export tool writes).
        limit_dim (int, optional): Cap on the final map's larger side in
            pixels. Defaults to None (no limit).
        limit_type (str): ``'hard'`` (rescale the factors in the forward
            pass, the official) or ``'loss'`` (the soft ``penalty()``).
            Defaults to ``'hard'``.
        limit_weight (float): Weight of the soft penalty. Defaults to 1.
        resize_outputs (bool): Resize each output to the nominal stride's
            ``ceil(input / stride)`` size (for anchors and RoI extractors).
            Defaults to False.
        align_corners (bool): Of every bilinear resize. Defaults to True.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.backbones import ShapeAdaptorResNet
        >>> model = ShapeAdaptorResNet(depth=18, base_channels=8, resize_outputs=True).eval()
        >>> [round(s, 3) for s in model.learned_factors()]
        [0.561, 0.561, 0.561, 0.561, 0.561, 0.561]
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
                 adaptor_type: str = 'residual',
                 mode: str = 'standard',
                 learnable_stem: Optional[bool] = None,
                 num_adaptors: Optional[int] = None,
                 count_rule: str = 'target_stride',
                 input_size: Optional[int] = None,
                 target_stride: Union[int, float] = 32,
                 adaptor_positions: Optional[Sequence[int]] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 alpha_init: Union[None, float, Sequence[float]] = None,
                 size_rule: Optional[str] = None,
                 frozen_factors: Optional[Sequence[float]] = None,
                 limit_dim: Optional[int] = None,
                 limit_type: str = 'hard',
                 limit_weight: float = 1.0,
                 resize_outputs: bool = False,
                 align_corners: bool = True,
                 **kwargs) -> None:
        _check_choice('adaptor_type', adaptor_type, ADAPTOR_TYPES)
        _check_choice('mode', mode, MODES)
        _check_choice('count_rule', count_rule, COUNT_RULES)
        size_rule = size_rule or ('global' if mode == 'autosc' else 'local')
        self._check_common(r1, r2, size_rule, limit_dim, limit_type)
        if adaptor_type == 'pool' and mode == 'autosc':
            raise ValueError("mode='autosc' needs adaptor_type='residual' (adaptors inside "
                             "the human network's blocks); valid for 'pool': "
                             "('standard', 'autotl')")
        if learnable_stem is None:
            learnable_stem = adaptor_type == 'residual' and mode != 'autosc'
        if learnable_stem and (adaptor_type == 'pool' or mode == 'autosc'):
            raise ValueError("learnable_stem=True needs adaptor_type='residual' and mode in "
                             f"('standard', 'autotl'), got adaptor_type={adaptor_type!r}, "
                             f'mode={mode!r}')
        num_stages = kwargs.get('num_stages', 4)
        if kwargs.get('dilations') is not None and any(d != 1 for d in kwargs['dilations']):
            raise ValueError(f'dilations must stay 1 in ShapeAdaptorResNet, got '
                             f"dilations={kwargs['dilations']}")
        kwargs.pop('dilations', None)
        strides = kwargs.pop('strides', None)
        if mode == 'standard':
            if strides is not None and any(s != 1 for s in strides):
                raise ValueError(f"strides must stay 1 in ShapeAdaptorResNet with mode="
                                 f"'standard' (the adaptors do the downsampling), got "
                                 f'strides={strides}')
            strides = (1, ) * num_stages
        elif strides is None:
            strides = (1, ) + (2, ) * (num_stages - 1)
        strides = tuple(strides)
        build_strides = strides if mode == 'autosc' else (1, ) * num_stages
        super().__init__(depth, out_indices=out_indices, strides=build_strides,
                         dilations=(1, ) * num_stages, **kwargs)
        self.adaptor_type, self.mode, self.learnable_stem = adaptor_type, mode, learnable_stem
        self.nominal_strides = tuple(4 * 2**i for i in range(num_stages))
        self._blocks = [block for name in self.res_layers for block in getattr(self, name)]
        self._stage_starts, self._stage_ends = [], []
        for name in self.res_layers:
            self._stage_starts.append(sum(len(getattr(self, n)) for n in
                                          self.res_layers[:self.res_layers.index(name)]))
            self._stage_ends.append(self._stage_starts[-1] + len(getattr(self, name)) - 1)
        num_blocks = len(self._blocks)

        if learnable_stem:
            stem_conv = self.stem[0] if self.deep_stem else self.conv1
            stem_conv.stride = (1, 1)
        num_stem = (1 if mode == 'standard' else 2) if learnable_stem else 0
        base_stride = 1 if learnable_stem else 4
        strided_starts = [self._stage_starts[i] for i, s in enumerate(strides) if s > 1]

        def check_count(n, low, high, why):
            if isinstance(n, bool) or not isinstance(n, int) or not low <= n <= high:
                raise ValueError(f'num_adaptors must be in {low}..{high} ({why}), got {n!r}')

        if mode == 'autotl':
            if not strided_starts and not learnable_stem:
                raise ValueError(
                    f"mode='autotl' puts adaptors at the network's strided points, but "
                    f'strides={strides} with learnable_stem=False has none; valid: a stage '
                    f"stride of 2 in strides, learnable_stem=True, or mode='standard'")
            if adaptor_positions is not None:
                raise ValueError("adaptor_positions must be None with mode='autotl' (the "
                                 'adaptors sit at the strided points)')
            positions = tuple(strided_starts)
            count = num_stem + len(positions)
            if num_adaptors is not None and num_adaptors != count:
                raise ValueError(f"num_adaptors must be {count} with mode='autotl' (the "
                                 f'strided points of this network) or None, got {num_adaptors!r}')
            default_alphas = [AUTOTL_ALPHA] * count
        elif mode == 'autosc':
            eligible = [j for j in range(num_blocks - 1) if j not in self._stage_starts]
            if num_adaptors is None:
                num_adaptors = min(2 if input_size is not None and input_size <= 64 else 4,
                                   len(eligible))
            check_count(num_adaptors, 1, len(eligible),
                        'the non-downsampling blocks but the last')
            if adaptor_positions is None:
                gap = (num_blocks - num_stages) / num_adaptors
                positions = tuple(eligible[int(i * gap)] for i in range(num_adaptors))
            else:
                positions = self._check_positions(adaptor_positions, num_adaptors, eligible)
            count = num_adaptors
            default_alphas = [AUTOSC_ALPHA] * count
        else:
            if not isinstance(target_stride, (int, float)) or target_stride <= base_stride:
                raise ValueError(f'target_stride must be larger than the fixed stem stride '
                                 f'{base_stride}, got {target_stride!r}')
            ratio = target_stride / base_stride
            # 'pool': the blocks an adaptor runs before; 'residual': the cells that
            # adapt (never the last block).
            slots = list(range(1, num_blocks)) if adaptor_type == 'pool' else list(
                range(num_blocks - 1))
            max_count = len(slots) + num_stem
            if num_adaptors is None:
                if count_rule == 'input_size':
                    if (isinstance(input_size, bool) or not isinstance(input_size, (int, float))
                            or input_size / base_stride < 4):
                        raise ValueError(f"count_rule='input_size' needs input_size (the "
                                         f'training input side, >= {4 * base_stride} px), got '
                                         f'{input_size!r}')
                    num_adaptors = input_size_num_adaptors(input_size / base_stride)
                else:
                    num_adaptors = default_num_adaptors(ratio, r1)
                num_adaptors = min(num_adaptors, max_count)
            check_count(num_adaptors, num_stem or 1, max_count,
                        f'{len(slots)} block slots' + (' plus the stem' if num_stem else ''))
            num_blocks_adapt = num_adaptors - num_stem
            if adaptor_positions is not None:
                positions = self._check_positions(adaptor_positions, num_blocks_adapt, slots)
            elif adaptor_type == 'pool':
                positions = uniform_positions(num_blocks_adapt, num_blocks)
            elif learnable_stem:
                # Unit 0 is the stem, unit j + 1 block j; the official spread.
                positions = tuple(u - 1 for u in official_positions(num_adaptors,
                                                                    num_blocks)[1:])
            else:
                gap = num_blocks / (num_adaptors + 1)
                positions = tuple(int(i * gap) for i in range(1, num_adaptors + 1))
            default_alphas = equal_factor_alphas(
                num_adaptors, ratio, r1, r2, alpha_init is None and frozen_factors is None,
                f'target_stride={target_stride} from stride {base_stride}',
                f'num_adaptors >= {default_num_adaptors(ratio, r1)}')
        self.target_stride = target_stride
        self.adaptor_positions = tuple(positions)
        self.num_stem_adaptors = num_stem

        kinds = ['pool'] * num_stem + [adaptor_type] * len(positions)
        alphas = self._make_alphas(alpha_init, default_alphas)
        self.adaptors = self._make_adaptors(alphas, kinds, frozen_factors, r1, r2, size_rule,
                                            align_corners)
        if adaptor_type == 'residual':
            for j in positions:
                self._make_strided_shortcut(self._blocks[j])
        self._block_adaptor: Dict[int, int] = {j: num_stem + k for k, j in enumerate(positions)}
        self._steps = self._chain_steps(strides)
        self._init_chain(r1=r1, r2=r2, size_rule=size_rule, limit_dim=limit_dim,
                         limit_type=limit_type, limit_weight=limit_weight,
                         resize_outputs=resize_outputs, align_corners=align_corners)
        self._freeze_stages()  # again: the new shortcuts of frozen stages freeze too

    @staticmethod
    def _check_positions(positions, count: int, valid: Sequence[int]) -> Tuple[int, ...]:
        positions = tuple(positions)
        if (len(positions) != count or list(positions) != sorted(set(positions))
                or any(p not in valid for p in positions)):
            raise ValueError(f'adaptor_positions must be {count} increasing block indices '
                             f'among {list(valid)}, got {positions!r}')
        return positions

    def _make_strided_shortcut(self, block: nn.Module) -> None:
        """Give ``block`` a stride-2 shortcut (the r1 branch): its own projection or a new one."""
        if block.downsample is None:
            planes = (block.conv3.out_channels if isinstance(block, _Bottleneck) else
                      block.conv2.out_channels)
            in_channels = block.conv1.in_channels
            layers = [build_conv_layer(self.conv_cfg, in_channels, planes, 1, stride=2,
                                       bias=False),
                      build_norm_layer(self.norm_cfg, planes)[1]]
            if self.avg_down:
                layers[0].stride = (1, 1)
                layers.insert(0, nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False))
            block.downsample = nn.Sequential(*layers)
            return
        first = block.downsample[0]
        if self.avg_down:
            if not isinstance(first, nn.AvgPool2d):
                block.downsample = nn.Sequential(
                    nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False),
                    *block.downsample)
        else:
            first.stride = (2, 2)

    def _chain_steps(self, strides: Sequence[int]) -> List[ChainStep]:
        steps: List[ChainStep] = []
        if self.learnable_stem:
            steps += [('adaptor', k) for k in range(self.num_stem_adaptors)]
        else:
            steps += [('stride', 2), ('stride', 2)]  # stem conv and max-pool
        starts = {self._stage_starts[i]: s for i, s in enumerate(strides)}
        for j in range(len(self._blocks)):
            k = self._block_adaptor.get(j)
            if self.mode == 'autosc' and starts.get(j, 1) > 1:
                steps.append(('stride', starts[j]))
            if k is not None:
                steps.append(('adaptor', k))
        return steps

    def train(self, mode: bool = True) -> 'ShapeAdaptorResNet':
        # mmdet's ResNet.train returns None, which would break model.eval() chains.
        super().train(mode)
        return self

    def _adaptor_block(self, block: nn.Module, adaptor: ShapeAdaptor, x: Tensor,
                       size: Tuple[int, int], scale: float) -> Tensor:

        def mixed(x):
            return adaptor.mix(block.downsample(x), residual_path(block, x), size, scale)

        if block.with_cp and x.requires_grad:
            out = cp.checkpoint(mixed, x, use_reentrant=False)
        else:
            out = mixed(x)
        return block.relu(out)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        input_size = tuple(x.shape[-2:])
        sizes, scale = self.plan(input_size)
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        if self.learnable_stem:
            for k in range(self.num_stem_adaptors):
                x = self.adaptors[k](x, sizes[k], scale)
        else:
            x = self.maxpool(x)
        out_units = {self._stage_ends[i] for i in self.out_indices}
        outs = []
        for j, block in enumerate(self._blocks):
            k = self._block_adaptor.get(j)
            if k is None:
                x = block(x)
            elif self.adaptor_type == 'pool':
                x = block(self.adaptors[k](x, sizes[k], scale))
            else:
                x = self._adaptor_block(block, self.adaptors[k], x, sizes[k], scale)
            if j in out_units:
                outs.append(x)
        return self._finish(outs, input_size, sorted(self.out_indices))


@register_backbone
class ShapeAdaptorResNeXt(ShapeAdaptorResNet):
    """ResNeXt (grouped bottlenecks) with shape adaptors; see :class:`ShapeAdaptorResNet`.

    Args:
        groups (int): Groups of the 3x3 convs. Defaults to 1.
        base_width (int): Width per group of the first stage. Defaults to 4.
        **kwargs: :class:`ShapeAdaptorResNet`'s arguments (``depth`` 50, 101, 152).

    Example:
        >>> from mmplug_agg.models.backbones.shape_adaptor import ShapeAdaptorResNeXt
        >>> model = ShapeAdaptorResNeXt(depth=50, groups=32, base_width=4, mode='autotl')
        >>> len(model.adaptors)
        5
    """

    arch_settings = _ResNeXt.arch_settings

    def __init__(self, groups: int = 1, base_width: int = 4, **kwargs) -> None:
        self.groups, self.base_width = groups, base_width
        super().__init__(**kwargs)

    make_res_layer = _ResNeXt.make_res_layer


@register_backbone
class ShapeAdaptorDLA(ShapeAdaptorChainMixin, DLA):
    """DLA whose levels all run at stride 1, with shape adaptors between levels.

    The stem and level 0 keep the input resolution (as in DLA); max-pool vs
    identity adaptors run before some of levels 1 up to the deepest returned
    level. DLA's trees have no single shortcut to act as the r1 branch, so
    only ``adaptor_type='pool'`` exists here. ``mode='autotl'`` puts one
    adaptor before each of those levels, i.e. at DLA's original strided
    points, at ``s = 0.55``; ``'standard'`` spreads ``num_adaptors`` with
    initial factors that multiply to ``1 / target_stride`` (default 16: 32
    would need six adaptors at r1 = 0.5). ``output_stride``, ``strides`` and
    ``dilations`` are not accepted (all 1 here).

    Args:
        arch (str): A ``DLA_ARCHS`` name. Defaults to ``'dla34'``.
        out_indices (Sequence[int]): Levels to return. Defaults to (2, 3, 4, 5).
        frozen_stages, norm_cfg, norm_eval, with_cp, init_cfg, ...: As in
            :class:`DLA`.
        adaptor_type (str): Only ``'pool'``. Defaults to ``'pool'``.
        mode (str): ``'standard'`` or ``'autotl'``. Defaults to ``'standard'``.
        target_stride (int | float): Overall stride that the initial factors
            multiply to (``'standard'``). Defaults to 16.
        num_adaptors, adaptor_positions, r1, r2, alpha_init, size_rule,
            frozen_factors, limit_dim, limit_type, limit_weight,
            resize_outputs, align_corners: As in :class:`ShapeAdaptorResNet`'s
            ``'pool'`` form; the units are the levels (positions 1..5) and
            the nominal strides 1, 2, 4, 8, 16, 32.

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
                 adaptor_type: str = 'pool',
                 mode: str = 'standard',
                 num_adaptors: Optional[int] = None,
                 target_stride: Union[int, float] = 16,
                 adaptor_positions: Optional[Sequence[int]] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 alpha_init: Union[None, float, Sequence[float]] = None,
                 size_rule: str = 'local',
                 frozen_factors: Optional[Sequence[float]] = None,
                 limit_dim: Optional[int] = None,
                 limit_type: str = 'hard',
                 limit_weight: float = 1.0,
                 resize_outputs: bool = False,
                 align_corners: bool = True,
                 **kwargs) -> None:
        _check_choice('adaptor_type', adaptor_type, ('pool', ))
        _check_choice('mode', mode, ('standard', 'autotl'))
        self._check_common(r1, r2, size_rule, limit_dim, limit_type)
        for name in ('output_stride', 'strides', 'dilations'):
            if kwargs.pop(name, None) is not None:
                raise ValueError(f'ShapeAdaptorDLA takes no {name}: every level runs at '
                                 f'stride 1 and the adaptors do the downsampling')
        super().__init__(arch, out_indices=out_indices, strides=(1, ) * NUM_LEVELS,
                         dilations=(1, ) * NUM_LEVELS, **kwargs)
        self.adaptor_type, self.mode = adaptor_type, mode
        self.nominal_strides = tuple(2**i for i in range(NUM_LEVELS))
        num_units = max(self.out_indices) + 1
        slots = list(range(1, num_units))
        if mode == 'autotl':
            if adaptor_positions is not None or (num_adaptors not in (None, len(slots))):
                raise ValueError(f"mode='autotl' puts one adaptor before each of levels "
                                 f'{slots} (the strided points): adaptor_positions must be '
                                 f'None and num_adaptors None or {len(slots)}')
            positions, default_alphas = tuple(slots), [AUTOTL_ALPHA] * len(slots)
        else:
            if not isinstance(target_stride, (int, float)) or target_stride <= 1:
                raise ValueError(f'target_stride must be larger than the fixed stem stride '
                                 f'1, got {target_stride!r}')
            if num_adaptors is None:
                num_adaptors = min(default_num_adaptors(target_stride, r1), len(slots))
            if (isinstance(num_adaptors, bool) or not isinstance(num_adaptors, int)
                    or not 1 <= num_adaptors <= len(slots)):
                raise ValueError(f'num_adaptors must be in 1..{len(slots)} (the slots before '
                                 f'levels {slots}), got {num_adaptors!r}')
            if adaptor_positions is None:
                positions = uniform_positions(num_adaptors, num_units)
            else:
                positions = tuple(adaptor_positions)
                if (len(positions) != num_adaptors or list(positions) != sorted(set(positions))
                        or any(p not in slots for p in positions)):
                    raise ValueError(f'adaptor_positions must be {num_adaptors} increasing '
                                     f'levels among {slots}, got {adaptor_positions!r}')
            default_alphas = equal_factor_alphas(
                num_adaptors, target_stride, r1, r2, alpha_init is None and frozen_factors is None,
                f'target_stride={target_stride}',
                f'num_adaptors >= {default_num_adaptors(target_stride, r1)} (at most '
                f'{len(slots)})')
        self.target_stride = target_stride
        self.adaptor_positions = positions
        alphas = self._make_alphas(alpha_init, default_alphas)
        self.adaptors = self._make_adaptors(alphas, ['pool'] * len(positions), frozen_factors,
                                            r1, r2, size_rule, align_corners)
        self._steps = [('adaptor', k) for k in range(len(positions))]
        self._init_chain(r1=r1, r2=r2, size_rule=size_rule, limit_dim=limit_dim,
                         limit_type=limit_type, limit_weight=limit_weight,
                         resize_outputs=resize_outputs, align_corners=align_corners)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        input_size = tuple(x.shape[-2:])
        sizes, scale = self.plan(input_size)
        x = self.base_layer(x)
        slot = dict(zip(self.adaptor_positions, range(len(self.adaptor_positions))))
        outs = []
        for level in range(max(self.out_indices) + 1):
            if level in slot:
                k = slot[level]
                x = self.adaptors[k](x, sizes[k], scale)
            x = getattr(self, f'level{level}')(x)
            if level in self.out_indices:
                outs.append(x)
        return self._finish(outs, input_size, sorted(self.out_indices))


def add_shape_limit_loss(losses: dict, backbone: nn.Module) -> dict:
    """Add ``loss_shape_limit`` (the soft ``penalty()``) when ``limit_type='loss'``."""
    if (isinstance(backbone, ShapeAdaptorChainMixin) and backbone.limit_dim is not None
            and backbone.limit_type == 'loss'):
        losses['loss_shape_limit'] = backbone.penalty()
    return losses
