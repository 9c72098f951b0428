"""Deep Layer Aggregation backbones (Yu et al., "Deep Layer Aggregation", CVPR 2018).

DLA merges features inside a stage with hierarchical deep aggregation (HDA):
a ``Tree`` of residual blocks whose outputs, and those of the shallower
subtrees, are fused by a ``root`` node. Stages are chained by iterative deep
aggregation (IDA): a tree that is a *level root* also receives the downsampled
input of its stage, so every stage refines the previous one.

The variants differ only in a row of ``DLA_ARCHS``; one builder turns a row
into modules. Parameter names follow the official/timm checkpoints where the
two agree (``levelN.tree1.conv1``, ``levelN.root.conv``...); mmcv's
``ConvModule`` renames the stem, the conv levels and the projections, which
``convert_dla_state_dict`` maps (see ``tools/model_converters/dla2mmplug.py``).

Unlike the official code this one has no projection that is computed and
thrown away (deep trees project nothing, so every parameter gets a gradient
and DDP needs no ``find_unused_parameters``), keeps the cardinality per block
instance, pools with ``ceil_mode`` so that any input size works, and passes
dilation down to every block for dilated (segmentation) variants.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmplug_agg.registry import register_backbone

from .frozen_stages import FrozenStagesMixin

NUM_LEVELS = 6
# Per output stride, the (strides, dilations) of levels 0-5. A level's stride
# is relative to the previous level; below 32 the last trees stop downsampling
# and dilate by the factor they skipped, so their receptive field is kept.
OUTPUT_STRIDES = {
    32: ((1, 2, 2, 2, 2, 2), (1, 1, 1, 1, 1, 1)),
    16: ((1, 2, 2, 2, 2, 1), (1, 1, 1, 1, 1, 2)),
    8: ((1, 2, 2, 2, 1, 1), (1, 1, 1, 1, 2, 4)),
}
BLOCKS = ('basic', 'bottleneck', 'bottleneckx')

# levels: level0/level1 give a number of convs, level2..level5 a tree depth.
DLA_ARCHS: Dict[str, dict] = {
    'dla34': dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 128, 256, 512),
                  block='basic'),
    'dla46_c': dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 64, 128, 256),
                    block='bottleneck'),
    'dla46x_c': dict(levels=(1, 1, 1, 2, 2, 1), channels=(16, 32, 64, 64, 128, 256),
                     block='bottleneckx'),
    'dla60x_c': dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 64, 64, 128, 256),
                     block='bottleneckx'),
    'dla60': dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 128, 256, 512, 1024),
                  block='bottleneck'),
    'dla60x': dict(levels=(1, 1, 1, 2, 3, 1), channels=(16, 32, 128, 256, 512, 1024),
                   block='bottleneckx'),
    'dla102': dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024),
                   block='bottleneck', residual_root=True),
    'dla102x': dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024),
                    block='bottleneckx', residual_root=True),
    'dla102x2': dict(levels=(1, 1, 1, 3, 4, 1), channels=(16, 32, 128, 256, 512, 1024),
                     block='bottleneckx', cardinality=64, residual_root=True),
    'dla169': dict(levels=(1, 1, 2, 3, 5, 1), channels=(16, 32, 128, 256, 512, 1024),
                   block='bottleneck', residual_root=True),
}
# The paper's ResNeXt-style blocks use 32 groups, each as wide as out_channels / 32.
DEFAULT_CARDINALITY = 32


class _ResidualBlock(BaseModule):
    """Shared forward of the DLA blocks: the shortcut may come from outside.

    A tree hands its first block the (projected, downsampled) tree input as
    shortcut, because that block's own input is not yet downsampled.
    """

    def __init__(self, with_cp: bool, init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.with_cp = with_cp
        self.relu = nn.ReLU(inplace=True)

    def residual(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor, shortcut: Optional[Tensor] = None) -> Tensor:
        if shortcut is None:
            shortcut = x

        def add_residual(x: Tensor, shortcut: Tensor) -> Tensor:
            out = self.residual(x)
            out += shortcut
            return out

        if self.with_cp and x.requires_grad:
            out = cp.checkpoint(add_residual, x, shortcut, use_reentrant=False)
        else:
            out = add_residual(x, shortcut)
        return self.relu(out)


class DLABasicBlock(_ResidualBlock):
    """Two 3x3 conv-norm layers (DLA-34)."""

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 cardinality: int = 1,
                 conv_cfg: Optional[dict] = None,
                 dcn: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg=None) -> None:
        super().__init__(with_cp, init_cfg)
        if cardinality != 1:
            raise ValueError(f"block='basic' has no groups; got cardinality={cardinality}")
        conv3x3_cfg = dcn if dcn is not None else conv_cfg
        self.conv1 = build_conv_layer(conv3x3_cfg, in_channels, out_channels, 3, stride=stride,
                                      padding=dilation, dilation=dilation, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, out_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(conv3x3_cfg, out_channels, out_channels, 3,
                                      padding=dilation, dilation=dilation, bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, out_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(getattr(self, self.norm1_name)(self.conv1(x)))
        return getattr(self, self.norm2_name)(self.conv2(out))


class DLABottleneck(_ResidualBlock):
    """1x1 - 3x3 - 1x1 bottleneck with expansion 2; grouped when ``cardinality > 1``.

    The inner width is ``out_channels / 2`` for the plain bottleneck and
    ``out_channels * cardinality / 32`` for the grouped one (so 32 groups keep
    the full width, 64 groups double it as in DLA-X-102 64x).
    """
    expansion = 2

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 cardinality: int = 1,
                 conv_cfg: Optional[dict] = None,
                 dcn: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg=None) -> None:
        super().__init__(with_cp, init_cfg)
        if cardinality == 1:
            mid_channels = out_channels // self.expansion
        else:
            mid_channels = out_channels * cardinality // DEFAULT_CARDINALITY
        if mid_channels == 0 or mid_channels % cardinality:
            raise ValueError(f'out_channels={out_channels} with cardinality={cardinality} '
                             f'gives {mid_channels} inner channels, not divisible into groups')
        self.conv1 = build_conv_layer(conv_cfg, in_channels, mid_channels, 1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(norm_cfg, mid_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.conv2 = build_conv_layer(dcn if dcn is not None else conv_cfg, mid_channels,
                                      mid_channels, 3, stride=stride, padding=dilation,
                                      dilation=dilation, groups=cardinality, bias=False)
        self.norm2_name, norm2 = build_norm_layer(norm_cfg, mid_channels, postfix=2)
        self.add_module(self.norm2_name, norm2)
        self.conv3 = build_conv_layer(conv_cfg, mid_channels, out_channels, 1, bias=False)
        self.norm3_name, norm3 = build_norm_layer(norm_cfg, out_channels, postfix=3)
        self.add_module(self.norm3_name, norm3)

    def residual(self, x: Tensor) -> Tensor:
        out = self.relu(getattr(self, self.norm1_name)(self.conv1(x)))
        out = self.relu(getattr(self, self.norm2_name)(self.conv2(out)))
        return getattr(self, self.norm3_name)(self.conv3(out))


BLOCK_TYPES = {'basic': DLABasicBlock, 'bottleneck': DLABottleneck, 'bottleneckx': DLABottleneck}


class Tree(BaseModule):
    """Hierarchical deep aggregation: a tree of ``depth`` levels of block pairs.

    A depth-1 tree runs two blocks and fuses both outputs (and the children
    handed down by its ancestors) in its root: ``conv(cat) -> norm (-> + last
    block output if residual_root) -> ReLU``. A deeper tree runs a
    ``depth - 1`` tree, then hands its output down as a child to a second
    ``depth - 1`` tree, whose deepest root aggregates everything. A
    ``level_root`` tree also hands down its downsampled input, which is how
    IDA links the stages.

    Args:
        depth (int): Tree depth (>= 1).
        block (str): One of ``'basic'``, ``'bottleneck'``, ``'bottleneckx'``.
        in_channels (int): Input channels.
        out_channels (int): Output channels of every block and of the root.
        stride (int): Downsampling of the tree (first block, and max-pooling
            of the input for the shortcut and the level-root child).
        dilation (int): Dilation of the blocks' 3x3 convs.
        level_root (bool): Aggregate the downsampled input too.
        children_channels (int): Channels of the children handed down by the
            ancestors (set by the parent tree).
        root_kernel_size (int): Kernel size of the root conv.
        residual_root (bool): Add the last block's output in the root.
        cardinality (int): Groups of ``'bottleneckx'`` blocks.
        conv_cfg, dcn, norm_cfg, with_cp: See :class:`DLA`.
    """

    def __init__(self,
                 depth: int,
                 block: str,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 level_root: bool = False,
                 children_channels: int = 0,
                 root_kernel_size: int = 1,
                 residual_root: bool = False,
                 cardinality: int = 1,
                 conv_cfg: Optional[dict] = None,
                 dcn: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg=None) -> None:
        super().__init__(init_cfg)
        self.depth = depth
        self.level_root = level_root
        self.residual_root = residual_root
        if level_root:
            children_channels += in_channels
        # ceil_mode matches the ceil-divided size of the strided first block.
        self.downsample = (nn.MaxPool2d(stride, stride, ceil_mode=True)
                           if stride > 1 else nn.Identity())
        common = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, with_cp=with_cp)
        if depth == 1:
            block_type = BLOCK_TYPES[block]
            block_args = dict(dilation=dilation, cardinality=cardinality, dcn=dcn, **common)
            self.tree1 = block_type(in_channels, out_channels, stride, **block_args)
            self.tree2 = block_type(out_channels, out_channels, 1, **block_args)
            self.project = (ConvModule(in_channels, out_channels, 1, conv_cfg=conv_cfg,
                                       norm_cfg=norm_cfg, act_cfg=None)
                            if in_channels != out_channels else nn.Identity())
            self.root = ConvModule(2 * out_channels + children_channels, out_channels,
                                   root_kernel_size, padding=(root_kernel_size - 1) // 2,
                                   conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
            self.relu = nn.ReLU(inplace=True)
        else:
            subtree = dict(block=block, dilation=dilation, root_kernel_size=root_kernel_size,
                           residual_root=residual_root, cardinality=cardinality, dcn=dcn,
                           **common)
            self.tree1 = Tree(depth - 1, in_channels=in_channels, out_channels=out_channels,
                              stride=stride, **subtree)
            self.tree2 = Tree(depth - 1, in_channels=out_channels, out_channels=out_channels,
                              children_channels=children_channels + out_channels, **subtree)

    def forward(self, x: Tensor, children: Sequence[Tensor] = ()) -> Tensor:
        bottom = self.downsample(x)
        if self.level_root:
            children = [*children, bottom]
        if self.depth > 1:
            # The first subtree starts a new aggregation; its output joins the
            # children that the second subtree's root fuses.
            x1 = self.tree1(x)
            return self.tree2(x1, [*children, x1])
        x1 = self.tree1(x, self.project(bottom))
        x2 = self.tree2(x1)
        out = self.root(torch.cat([x2, x1, *children], dim=1))
        if self.residual_root:
            out += x2
        return self.relu(out)


def _check_level_tuple(name: str, values: Sequence[int], minimum: int) -> Tuple[int, ...]:
    values = tuple(values)
    if len(values) != NUM_LEVELS or any(not isinstance(v, int) or v < minimum for v in values):
        raise ValueError(f'{name} must be {NUM_LEVELS} integers >= {minimum} (levels 0-5), '
                         f'got {values}')
    return values


@register_backbone
class DLA(FrozenStagesMixin, BaseModule):
    """Deep Layer Aggregation backbone for mmdet and mmseg.

    Levels 0-5 have strides 1, 2, 4, 8, 16, 32: a 7x7 stem conv, two conv
    stages (level0, level1) and four HDA trees (level2-level5), chained by
    IDA (levels 3-5 are level roots).

    Args:
        arch (str, optional): One of ``DLA_ARCHS`` (``'dla34'``, ``'dla46_c'``,
            ``'dla46x_c'``, ``'dla60x_c'``, ``'dla60'``, ``'dla60x'``,
            ``'dla102'``, ``'dla102x'``, ``'dla102x2'``, ``'dla169'``). None
            builds a new variant from ``levels``, ``channels`` and ``block``.
        levels (Sequence[int], optional): Per level, the number of convs
            (levels 0, 1) or the tree depth (levels 2-5). Overrides the arch.
        channels (Sequence[int], optional): Output channels of each level.
            Overrides the arch.
        block (str, optional): ``'basic'``, ``'bottleneck'`` (expansion 2) or
            ``'bottleneckx'`` (grouped bottleneck). Overrides the arch.
        cardinality (int, optional): Groups of ``'bottleneckx'`` blocks
            (default 32; dla102x2 uses 64).
        residual_root (bool, optional): Add the last block's output in the
            roots (the deep variants do). Overrides the arch.
        root_kernel_size (int): Kernel size of the root convs (1 in the paper).
        in_channels (int): Input image channels.
        out_indices (Sequence[int]): Levels to return, in 0-5.
        output_stride (int, optional): 8, 16 or 32. Below 32, the last trees
            keep the resolution and dilate instead (for segmentation).
        strides (Sequence[int], optional): Per-level stride (6 values),
            instead of ``output_stride``.
        dilations (Sequence[int], optional): Per-level dilation (6 values),
            instead of ``output_stride``.
        frozen_stages (int): Freeze the stem and levels ``0..frozen_stages``
            (-1 freezes nothing, 5 everything).
        conv_cfg (dict, optional): Config of every conv.
        dcn (dict, optional): Conv config of the blocks' 3x3 convs in the
            trees chosen by ``stage_with_dcn``, e.g. ``dict(type='DCNv2',
            deform_groups=1)``.
        stage_with_dcn (Sequence[bool]): For levels 2-5, whether ``dcn`` applies.
        norm_cfg (dict): Normalization config.
        norm_eval (bool): Keep the norm layers in eval mode while training.
        with_cp (bool): Recompute each block in backward (saves memory).
        init_cfg (dict | list[dict], optional): Initialization; by default
            Kaiming-normal (fan-out) convs and unit norms as in the paper.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
            loads converted weights (``tools/model_converters/dla2mmplug.py``).

    Example:
        >>> import torch
        >>> from mmplug_agg.models.backbones import DLA
        >>> model = DLA('dla34', out_indices=(2, 3, 4, 5)).eval()
        >>> for feat in model(torch.rand(1, 3, 333, 517)):
        ...     print(tuple(feat.shape))
        (1, 64, 84, 130)
        (1, 128, 42, 65)
        (1, 256, 21, 33)
        (1, 512, 11, 17)
    """

    def __init__(self,
                 arch: Optional[str] = 'dla34',
                 levels: Optional[Sequence[int]] = None,
                 channels: Optional[Sequence[int]] = None,
                 block: Optional[str] = None,
                 cardinality: Optional[int] = None,
                 residual_root: Optional[bool] = None,
                 root_kernel_size: int = 1,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (2, 3, 4, 5),
                 output_stride: Optional[int] = None,
                 strides: Optional[Sequence[int]] = None,
                 dilations: Optional[Sequence[int]] = None,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 dcn: Optional[dict] = None,
                 stage_with_dcn: Sequence[bool] = (False, False, False, False),
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
                     distribution='normal'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg)
        spec = self._resolve_arch(arch, levels=levels, channels=channels, block=block,
                                  cardinality=cardinality, residual_root=residual_root)
        self.levels, self.channels = spec['levels'], spec['channels']
        self.block, self.residual_root = spec['block'], spec['residual_root']
        self.cardinality = spec['cardinality']
        self.strides, self.dilations = self._resolve_strides(output_stride, strides, dilations)
        self.out_indices = self._check_out_indices(out_indices)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < NUM_LEVELS:
            raise ValueError(f'frozen_stages must be in -1..{NUM_LEVELS - 1} (-1 freezes '
                             f'nothing), got {frozen_stages!r}')
        if root_kernel_size < 1 or root_kernel_size % 2 == 0:
            raise ValueError(f'root_kernel_size must be a positive odd int, got {root_kernel_size}')
        stage_with_dcn = tuple(stage_with_dcn)
        if len(stage_with_dcn) != NUM_LEVELS - 2:
            raise ValueError(f'stage_with_dcn needs one flag per tree (levels 2-5), '
                             f'got {stage_with_dcn}')
        if dcn is not None:
            dcn = {k: v for k, v in dcn.items() if k != 'fallback_on_stride'}
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        conv_norm = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg)
        self.base_layer = ConvModule(in_channels, self.channels[0], 7, padding=3, **conv_norm)
        for level in (0, 1):
            convs = []
            for i in range(self.levels[level]):
                # level1 starts from level0's output, which keeps the stem's width.
                conv_in = self.channels[0] if i == 0 else self.channels[level]
                convs.append(ConvModule(conv_in, self.channels[level], 3,
                                        stride=self.strides[level] if i == 0 else 1,
                                        padding=self.dilations[level],
                                        dilation=self.dilations[level], **conv_norm))
            self.add_module(f'level{level}', nn.Sequential(*convs))
        for level in range(2, NUM_LEVELS):
            self.add_module(
                f'level{level}',
                Tree(self.levels[level], self.block, self.channels[level - 1],
                     self.channels[level], stride=self.strides[level],
                     dilation=self.dilations[level], level_root=level > 2,
                     root_kernel_size=root_kernel_size, residual_root=self.residual_root,
                     cardinality=self.cardinality, dcn=dcn if stage_with_dcn[level - 2] else None,
                     with_cp=with_cp, **conv_norm))
        self._freeze_stages()

    @staticmethod
    def _resolve_arch(arch: Optional[str], **overrides) -> dict:
        if arch is None:
            spec = {}
        elif arch in DLA_ARCHS:
            spec = dict(DLA_ARCHS[arch])
        else:
            raise ValueError(f'arch must be one of {sorted(DLA_ARCHS)} (or None with levels, '
                             f'channels and block), got {arch!r}')
        spec.update({k: v for k, v in overrides.items() if v is not None})
        missing = [k for k in ('levels', 'channels', 'block') if k not in spec]
        if missing:
            raise ValueError(f'arch=None needs {missing} to define the variant')
        spec['levels'] = _check_level_tuple('levels', spec['levels'], 1)
        spec['channels'] = _check_level_tuple('channels', spec['channels'], 1)
        if spec['block'] not in BLOCKS:
            raise ValueError(f'block must be one of {BLOCKS}, got {spec["block"]!r}')
        default_cardinality = DEFAULT_CARDINALITY if spec['block'] == 'bottleneckx' else 1
        spec.setdefault('cardinality', default_cardinality)
        spec.setdefault('residual_root', False)
        if spec['block'] != 'bottleneckx' and spec['cardinality'] != 1:
            raise ValueError(f"cardinality applies to block='bottleneckx' only, got "
                             f"cardinality={spec['cardinality']} with block={spec['block']!r}")
        return spec

    @staticmethod
    def _resolve_strides(output_stride, strides, dilations) -> Tuple[tuple, tuple]:
        if output_stride is not None:
            if strides is not None or dilations is not None:
                raise ValueError('give either output_stride or strides/dilations, not both')
            if output_stride not in OUTPUT_STRIDES:
                raise ValueError(f'output_stride must be one of {sorted(OUTPUT_STRIDES)}, '
                                 f'got {output_stride!r}')
            return OUTPUT_STRIDES[output_stride]
        default_strides, default_dilations = OUTPUT_STRIDES[32]
        strides = _check_level_tuple('strides', strides or default_strides, 1)
        dilations = _check_level_tuple('dilations', dilations or default_dilations, 1)
        return strides, dilations

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        if (not out_indices or len(set(out_indices)) != len(out_indices)
                or any(not isinstance(i, int) or not 0 <= i < NUM_LEVELS for i in out_indices)):
            raise ValueError(f'out_indices must be distinct levels in 0-{NUM_LEVELS - 1} '
                             f'(strides 1-32), got {out_indices}')
        return out_indices

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned levels, for the neck's ``in_channels``."""
        return [self.channels[i] for i in self.out_indices]

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        levels = [getattr(self, f'level{i}') for i in range(self.frozen_stages + 1)]
        return [self.base_layer] + levels

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.base_layer(x)
        outs = []
        last = max(self.out_indices)
        for level in range(last + 1):
            x = getattr(self, f'level{level}')(x)
            if level in self.out_indices:
                outs.append(x)
        return tuple(outs)


_BASE_LAYER_KEY = re.compile(r'^base_layer\.([01])\.')
_CONV_LEVEL_KEY = re.compile(r'^(level[01])\.(\d+)\.')
_PROJECT_KEY = re.compile(r'^(.*)\.project\.([01])\.')
_CLASSIFIER_PREFIXES = ('fc.', 'head.')


def convert_dla_state_dict(state_dict: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Map an official (ucbdrive) or timm DLA state dict to :class:`DLA`'s keys.

    The classifier is dropped, and so are the projections of trees deeper
    than one level, which the official code computes but never uses (timm
    already leaves them out). ``Sequential`` indices of the stem, the conv
    levels and the projections become ``ConvModule``'s ``conv``/``bn``.

    Returns:
        tuple: The converted state dict and the list of dropped source keys.
    """
    state_dict = {k[len('module.'):] if k.startswith('module.') else k: v
                  for k, v in state_dict.items()}
    converted, dropped = {}, []
    for key, value in state_dict.items():
        if key.startswith(_CLASSIFIER_PREFIXES):
            dropped.append(key)
            continue
        new_key = key
        match = _BASE_LAYER_KEY.match(key)
        if match:
            new_key = f"base_layer.{('conv', 'bn')[int(match[1])]}.{key[match.end():]}"
        match = _CONV_LEVEL_KEY.match(key)
        if match:
            # Each conv of level0/level1 is a (conv, bn, relu) triple in the source.
            index = int(match[2])
            new_key = f"{match[1]}.{index // 3}.{('conv', 'bn')[index % 3]}.{key[match.end():]}"
        match = _PROJECT_KEY.match(key)
        if match:
            tree = match[1]
            if f'{tree}.tree1.conv1.weight' not in state_dict:
                dropped.append(key)  # deep tree: the source discards this projection
                continue
            new_key = f"{tree}.project.{('conv', 'bn')[int(match[2])]}.{key[match.end():]}"
        converted[new_key] = value
    return converted, dropped
