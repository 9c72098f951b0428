"""BiFPN, the weighted bidirectional feature pyramid of EfficientDet.

Tan, Pang and Le, "EfficientDet: Scalable and Efficient Object Detection",
CVPR 2020. The graph of one BiFPN cell is plain data (see
:func:`bifpn_topology`), generated for any number of pyramid levels, and the
neck is built from it, so it takes any backbone and any level range.

Layer facts follow the PyTorch EfficientDet models of ``effdet`` (the
``efficientdet_d*`` configurations), against which the test suite checks
parameter counts and outputs: BN with eps 1e-3 and momentum 0.01 (torch terms),
bias-free convolutions in front of every BN, and pre-activation nodes
(fuse, Swish, depthwise 3x3, pointwise 1x1, BN).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule, build_activation_layer
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmplug_agg.models.layers.channel_check import check_in_channels
from mmplug_agg.registry import register_neck

FUSION_MODES = ('fastattn', 'attn', 'sum')
POOL_PADDINGS = ('symmetric', 'same')

# A node of a cell: (pyramid level it produces, ids of the nodes it fuses).
Node = Tuple[int, Tuple[int, ...]]

# Activation types whose modules take ``inplace`` (mmcv builds the others without it).
_INPLACE_ACTS = ('ReLU', 'ReLU6', 'LeakyReLU', 'ELU', 'SiLU', 'Hardswish')


def bifpn_topology(num_levels: int, skip_edges: bool = True) -> List[Node]:
    """The nodes of one BiFPN cell over ``num_levels`` consecutive levels.

    Ids ``0 .. num_levels - 1`` are the cell's inputs, finest level first; the
    k-th node of the returned list gets id ``num_levels + k``. Levels count from
    0 (the finest input). The top-down pass comes first: one node per level from
    the second coarsest down to the finest, fusing that level's newest node with
    the newest node of the level above. The bottom-up pass follows: one node per
    level from the second finest up to the coarsest, fusing the level's input,
    its top-down node (middle levels only) and the newest node of the level
    below. Feeding the level's input into the bottom-up node of middle levels is
    the extra edge of the paper (``skip_edges=False`` drops it: the node then
    fuses its top-down node and the level below only).

    The cell's outputs are the newest node of each level
    (:func:`topology_outputs`).

    Args:
        num_levels: Number of pyramid levels, at least 2.
        skip_edges: Add the input-to-output edge at middle levels.

    Returns:
        list[tuple[int, tuple[int, ...]]]: ``(level, input ids)`` per node.

    Example:
        >>> bifpn_topology(3)
        [(1, (1, 2)), (0, (0, 3)), (1, (1, 3, 4)), (2, (2, 5))]
    """
    if num_levels < 2:
        raise ValueError(f'a BiFPN cell needs at least 2 levels, got num_levels={num_levels}')
    newest = list(range(num_levels))
    nodes: List[Node] = []

    def add(level: int, inputs: Tuple[int, ...]) -> None:
        nodes.append((level, inputs))
        newest[level] = num_levels + len(nodes) - 1

    for level in range(num_levels - 2, -1, -1):
        add(level, (newest[level], newest[level + 1]))
    for level in range(1, num_levels):
        top_down = newest[level]
        if level == num_levels - 1:
            inputs: Tuple[int, ...] = (level, )
        elif skip_edges:
            inputs = (level, top_down)
        else:
            inputs = (top_down, )
        add(level, inputs + (newest[level - 1], ))
    return nodes


def topology_outputs(nodes: Sequence[Node], num_levels: int) -> List[int]:
    """Id of the newest node of each level (finest first): a cell's outputs."""
    newest = list(range(num_levels))
    for index, (level, _) in enumerate(nodes):
        newest[level] = num_levels + index
    return newest


def _fit(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop or edge-pad ``x`` at the bottom and right to exactly ``size``."""
    height, width = x.shape[-2:]
    if height > size[0] or width > size[1]:
        x = x[..., :size[0], :size[1]]
        height, width = x.shape[-2:]
    if height < size[0] or width < size[1]:
        x = F.pad(x, (0, size[1] - width, 0, size[0] - height), mode='replicate')
    return x


def max_pool_down(x: Tensor, same: bool = False) -> Tensor:
    """Max-pool 3x3 with stride 2 to ``ceil(n / 2)`` pixels a side.

    The padding is one pixel on every side, or with ``same`` TensorFlow's ``SAME``
    padding: an even side gets its one pixel at the bottom/right only, which the
    TensorFlow checkpoints (effdet's ``tf_efficientdet_*``) were trained with.
    """
    if not same:
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    pads = []
    for n in reversed(x.shape[-2:]):  # F.pad takes the last dimension first
        total = max((-(-n // 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float('-inf')), kernel_size=3, stride=2)


class MaxPoolDown(nn.Module):
    """:func:`max_pool_down` as a module (the extra pyramid levels)."""

    def __init__(self, same: bool = False) -> None:
        super().__init__()
        self.same = same

    def forward(self, x: Tensor) -> Tensor:
        return max_pool_down(x, self.same)


def downsample(x: Tensor, size: Sequence[int], steps: int = 1, same: bool = False) -> Tensor:
    """Max-pool 3x3 with stride 2, ``steps`` times, to exactly ``size``.

    Each pool (:func:`max_pool_down`) makes an ``n``-pixel side ``ceil(n / 2)``:
    the size a stride-2 backbone stage gives. If the neighbour level is sized
    differently (a backbone that floors), the last bottom row or right column is
    cropped, or repeated when one is missing.
    """
    for _ in range(steps):
        x = max_pool_down(x, same)
    return _fit(x, size)


def upsample(x: Tensor, size: Sequence[int]) -> Tensor:
    """Nearest-neighbour resize to exactly ``size``."""
    return F.interpolate(x, size=tuple(size), mode='nearest')


def _activation(act_cfg: Optional[dict]) -> Optional[nn.Module]:
    if act_cfg is None:
        return None
    cfg = dict(act_cfg)
    if cfg['type'] in _INPLACE_ACTS:
        cfg.setdefault('inplace', True)
    return build_activation_layer(cfg)


class BiFPNNode(nn.Module):
    """One fusion node: resample the inputs, fuse them with weights, convolve.

    Args:
        level: Level this node produces.
        input_levels: Level of each input.
        input_channels: Channels of each input; an input whose count differs
            from ``out_channels`` first goes through a 1x1 conv + norm of its own.
        out_channels: Channels of the node.
        fusion_mode: ``'fastattn'``, ``'attn'`` or ``'sum'``.
        fusion_eps: Added to the weight sum in ``'fastattn'``.
        separable_conv: Depthwise-separable 3x3 conv if True, else a full 3x3.
        pre_act: Activation between fusion and conv if True, else after the norm.
        pool_padding: ``'symmetric'`` or ``'same'``, as in :class:`BiFPN`.
        conv_cfg, norm_cfg, act_cfg: As in :class:`BiFPN`.
    """

    def __init__(self,
                 level: int,
                 input_levels: Sequence[int],
                 input_channels: Sequence[int],
                 out_channels: int,
                 fusion_mode: str = 'fastattn',
                 fusion_eps: float = 1e-4,
                 separable_conv: bool = True,
                 pre_act: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 pool_padding: str = 'symmetric') -> None:
        super().__init__()
        self.level = level
        self.same_pool = pool_padding == 'same'
        self.fusion_mode = fusion_mode
        self.fusion_eps = fusion_eps
        # Registered first so that state-dict order matches effdet's FpnCombine.
        if fusion_mode == 'sum':
            self.register_parameter('fusion_weights', None)
        else:
            self.fusion_weights = nn.Parameter(torch.ones(len(input_levels)))
        self.laterals = nn.ModuleDict()
        for index, channels in enumerate(input_channels):
            if channels != out_channels:
                self.laterals[str(index)] = ConvModule(
                    channels, out_channels, 1, conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        self._lateral_keys = [str(i) if str(i) in self.laterals else None
                              for i in range(len(input_levels))]
        # Level gap per input: > 0 finer (pool that many times), < 0 coarser (upsample).
        self._gaps = [level - input_level for input_level in input_levels]

        self.pre_act = _activation(act_cfg) if pre_act else None
        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                           act_cfg=None if pre_act else act_cfg)
        if separable_conv:
            # The depthwise conv has neither norm nor activation; no conv carries a
            # bias when a norm follows (as effdet with redundant_bias=False).
            self.conv = DepthwiseSeparableConvModule(
                out_channels, out_channels, 3, padding=1,
                bias=False if norm_cfg is not None else 'auto',
                dw_norm_cfg=None, dw_act_cfg=None, pw_norm_cfg=norm_cfg,
                pw_act_cfg=conv_kwargs['act_cfg'], conv_cfg=conv_cfg)
        else:
            self.conv = ConvModule(out_channels, out_channels, 3, padding=1, **conv_kwargs)

    def fuse(self, inputs: List[Tensor]) -> Tensor:
        """Weighted sum of same-sized inputs according to ``fusion_mode``."""
        if self.fusion_weights is None:
            out = inputs[0]
            for x in inputs[1:]:
                out = out + x
            return out
        # Normalised in float32 (float64 stays float64) and only then cast: under float16
        # autocast the sum and fusion_eps (1e-4) would otherwise round, and the weights no
        # longer sum to one.
        weights = self.fusion_weights.to(
            torch.promote_types(self.fusion_weights.dtype, torch.float32))
        if self.fusion_mode == 'attn':
            weights = torch.softmax(weights, dim=0)
        else:
            weights = F.relu(weights)
            weights = weights / (weights.sum() + self.fusion_eps)
        weights = weights.to(inputs[0].dtype)
        out = inputs[0] * weights[0]
        for index in range(1, len(inputs)):
            out = torch.addcmul(out, inputs[index], weights[index])
        return out

    def forward(self, inputs: List[Tensor], size: Sequence[int]) -> Tensor:
        resampled = []
        for x, key, gap in zip(inputs, self._lateral_keys, self._gaps):
            if key is not None:
                x = self.laterals[key](x)
            if gap > 0:
                x = downsample(x, size, gap, self.same_pool)
            elif gap < 0:
                x = upsample(x, size)
            resampled.append(x)
        out = self.fuse(resampled)
        if self.pre_act is not None:
            out = self.pre_act(out)
        return self.conv(out)


class BiFPNCell(nn.Module):
    """One BiFPN cell: the nodes of ``topology`` evaluated in order.

    Args:
        topology: Nodes as :func:`bifpn_topology` returns them.
        in_channels: Channels of each input level (finest first).
        out_channels: Channels of every node and output.
        **node_kwargs: Passed to each :class:`BiFPNNode`.
    """

    def __init__(self, topology: Sequence[Node], in_channels: Sequence[int], out_channels: int,
                 **node_kwargs) -> None:
        super().__init__()
        self.num_levels = len(in_channels)
        self.topology = [(level, tuple(inputs)) for level, inputs in topology]
        id_levels = list(range(self.num_levels)) + [level for level, _ in self.topology]
        id_channels = list(in_channels) + [out_channels] * len(self.topology)
        self.nodes = nn.ModuleList()
        for level, inputs in self.topology:
            self.nodes.append(BiFPNNode(level, [id_levels[i] for i in inputs],
                                        [id_channels[i] for i in inputs], out_channels,
                                        **node_kwargs))
        self.output_ids = topology_outputs(self.topology, self.num_levels)

    def forward(self, feats: List[Tensor]) -> List[Tensor]:
        sizes = [feat.shape[-2:] for feat in feats]
        values = list(feats)
        for node, (_, inputs) in zip(self.nodes, self.topology):
            values.append(node([values[i] for i in inputs], sizes[node.level]))
        return [values[i] for i in self.output_ids]


@register_neck
class BiFPN(BaseModule):
    """Bidirectional feature pyramid with weighted fusion (EfficientDet).

    Takes FPN's arguments. The inputs ``in_channels[start_level:end_level + 1]``
    become the finest levels; ``num_outs`` minus their number extra levels are
    made from the last of them: a 1x1 conv + norm when its channels differ from
    ``out_channels`` (first extra level only), then a 3x3 stride-2 max-pool.
    ``num_repeats`` cells of :func:`bifpn_topology` follow. Inputs of the first
    cell whose channels differ from ``out_channels`` get a 1x1 conv + norm per
    edge, as in the reference implementations.

    Every resampling hits the exact size of the level it feeds (upsampling by
    nearest-neighbour resize to that size, downsampling by max-pool followed by
    a one-pixel crop or pad where needed), so inputs of any size work.

    Args:
        in_channels: Channels of each backbone output.
        out_channels: Channels of every pyramid level.
        num_outs: Number of output levels (inputs used plus extra levels).
        start_level: Index of the first input used. Defaults to 0.
        end_level: Index of the last input used; -1 means the last one. Extra
            levels are only allowed when it is the last. Defaults to -1.
        num_repeats: Number of stacked cells. Defaults to 3 (EfficientDet-D0).
        fusion_mode: ``'fastattn'`` (ReLU weights divided by their sum plus
            ``fusion_eps``), ``'attn'`` (softmax weights) or ``'sum'`` (no
            weights). Defaults to ``'fastattn'``.
        fusion_eps: Stabiliser of ``'fastattn'``. Defaults to 1e-4.
        skip_edges: Feed each middle level's input into its bottom-up node.
            Defaults to True.
        separable_conv: Depthwise-separable 3x3 convs in the nodes (else full
            3x3 convs). Defaults to True.
        pre_act: Apply the activation between fusion and conv (EfficientDet's
            order) instead of after the norm. Defaults to True.
        conv_cfg: Conv layer config. Defaults to None (``nn.Conv2d``).
        norm_cfg: Norm layer config. Defaults to BN with eps 1e-3 and
            momentum 0.01, EfficientDet's settings.
        act_cfg: Activation config. Defaults to ``dict(type='SiLU')`` (Swish;
            ``dict(type='Swish')`` computes the same, more slowly).
        pool_padding: Padding of the stride-2 max-pools: ``'symmetric'`` (one
            pixel on every side, effdet's ``efficientdet_d*``) or ``'same'``
            (TensorFlow's ``SAME``: on even sides the pixel goes to the bottom/right
            only; the TensorFlow checkpoints, effdet's ``tf_efficientdet_d*``).
            Defaults to ``'symmetric'``.
        init_cfg: Initialisation config. Defaults to Xavier-uniform convs, as
            mmdet's FPN.

    Example:
        >>> import torch
        >>> neck = BiFPN(in_channels=[40, 112, 320], out_channels=64, num_outs=5)
        >>> feats = [torch.rand(1, c, s, s) for c, s in zip([40, 112, 320], [64, 32, 16])]
        >>> [tuple(out.shape) for out in neck(feats)]
        [(1, 64, 64, 64), (1, 64, 32, 32), (1, 64, 16, 16), (1, 64, 8, 8), (1, 64, 4, 4)]
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 start_level: int = 0,
                 end_level: int = -1,
                 num_repeats: int = 3,
                 fusion_mode: str = 'fastattn',
                 fusion_eps: float = 1e-4,
                 skip_edges: bool = True,
                 separable_conv: bool = True,
                 pre_act: bool = True,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: Optional[dict] = dict(type='SiLU'),
                 pool_padding: str = 'symmetric',
                 init_cfg: Optional[dict] = dict(type='Xavier', layer='Conv2d',
                                                 distribution='uniform')) -> None:
        super().__init__(init_cfg=init_cfg)
        in_channels = list(in_channels) if isinstance(in_channels, (list, tuple)) else None
        if not in_channels or not all(isinstance(c, int) and c > 0 for c in in_channels):
            raise ValueError('in_channels must be a non-empty list of positive ints (one per '
                             f'backbone output), got {in_channels!r}')
        num_ins = len(in_channels)
        if not 0 <= start_level < num_ins:
            raise ValueError(f'start_level={start_level} must index one of the {num_ins} inputs '
                             f'of in_channels={in_channels}')
        if end_level in (-1, num_ins - 1):
            end = num_ins
        elif start_level <= end_level < num_ins:
            end = end_level + 1
        else:
            raise ValueError(f'end_level={end_level} must be -1 or an index in '
                             f'[start_level={start_level}, {num_ins - 1}] of in_channels')
        used = end - start_level
        if num_outs < used:
            raise ValueError(f'num_outs={num_outs} is smaller than the {used} inputs used '
                             f'(in_channels[{start_level}:{end}]); BiFPN returns one map per '
                             'input used plus extra levels, so num_outs must be >= ' + str(used))
        if end != num_ins and num_outs != used:
            raise ValueError(f'num_outs={num_outs} must equal the {used} inputs used when '
                             f'end_level={end_level} is not the last input (extra levels are '
                             'made from the last input only)')
        if num_outs < 2:
            raise ValueError(f'num_outs={num_outs}: a BiFPN needs at least 2 levels')
        if fusion_mode not in FUSION_MODES:
            raise ValueError(f'unknown fusion_mode={fusion_mode!r}; choose one of {FUSION_MODES}')
        if pool_padding not in POOL_PADDINGS:
            raise ValueError(f'unknown pool_padding={pool_padding!r}; choose one of '
                             f'{POOL_PADDINGS}')
        if not isinstance(num_repeats, int) or num_repeats < 1:
            raise ValueError(f'num_repeats must be a positive int, got {num_repeats!r}')

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.num_outs = num_outs
        self.start_level = start_level
        self.end_level = end_level
        self.backbone_end_level = end
        self.num_repeats = num_repeats
        self.fusion_mode = fusion_mode

        self.extra_levels = nn.ModuleList()
        channels = in_channels[end - 1]
        for _ in range(num_outs - used):
            layers = []
            if channels != out_channels:
                layers.append(ConvModule(channels, out_channels, 1, conv_cfg=conv_cfg,
                                         norm_cfg=norm_cfg, act_cfg=None))
                channels = out_channels
            layers.append(MaxPoolDown(same=pool_padding == 'same'))
            self.extra_levels.append(nn.Sequential(*layers))

        self.topology = bifpn_topology(num_outs, skip_edges)
        level_channels = in_channels[start_level:end] + [channels] * (num_outs - used)
        node_kwargs = dict(fusion_mode=fusion_mode, fusion_eps=fusion_eps,
                           separable_conv=separable_conv, pre_act=pre_act, conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg, act_cfg=act_cfg, pool_padding=pool_padding)
        self.cells = nn.ModuleList()
        for _ in range(num_repeats):
            self.cells.append(BiFPNCell(self.topology, level_channels, out_channels,
                                        **node_kwargs))
            level_channels = [out_channels] * num_outs

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        check_in_channels('BiFPN (neck)', inputs, self.in_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """Pyramid of ``num_outs`` maps, finest first, each ``out_channels`` wide."""
        self._check_inputs(inputs)
        feats = list(inputs[self.start_level:self.backbone_end_level])
        for extra in self.extra_levels:
            feats.append(extra(feats[-1]))
        for cell in self.cells:
            feats = cell(feats)
        return tuple(feats)

    def normalised_fusion_weights(self) -> Dict[str, Tensor]:
        """The normalised fusion weights of every node, by parameter name (for inspection)."""
        weights = {}
        for name, node in self.named_modules():
            if isinstance(node, BiFPNNode) and node.fusion_weights is not None:
                raw = node.fusion_weights.detach()
                if node.fusion_mode == 'attn':
                    weights[name] = torch.softmax(raw, dim=0)
                else:
                    raw = F.relu(raw)
                    weights[name] = raw / (raw.sum() + node.fusion_eps)
        return weights
