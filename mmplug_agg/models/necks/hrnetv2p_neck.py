"""HRNetV2p: a feature pyramid built from the concatenated HRNet representation.

The parallel branches of a multi-resolution backbone are brought to the size of
the first (highest-resolution) branch, concatenated and reduced by a 1x1 conv;
the reduced map is pooled down to every pyramid level and each level gets its
own 3x3 conv (Wang et al., "Deep High-Resolution Representation Learning for
Visual Recognition", HRNetV2p).

Compared with mmdet's ``HRFPN`` (same parameter names, so its checkpoints load):

* branches are resized to branch 0's exact size (not multiplied by 2**i), so inputs
  whose side is not a multiple of 32 work;
* ``pooling_size`` says how a pooled level's size is rounded where 2**i does not
  divide branch 0's size: ``'floor'`` as HRFPN and the official HRNet-Object-Detection
  code (strided pooling drops the last rows), ``'ceil'`` the size a chain of i
  stride-2 convs would give (adaptive pooling covers every row);
* ``norm_cfg`` is applied to the reduction and to every level conv;
* ``act_cfg`` adds an activation after the level convs (default none, as HRFPN);
* bad arguments raise one ``ValueError`` that names the argument.

The helpers :func:`check_branches` and :func:`resize_concat_conv` are shared
with :class:`~mmplug_agg.models.decode_heads.HRNetV2Head`; they need neither
mmdet nor mmseg.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from mmplug_agg.deployment.pooling import adaptive_avg_pool2d as export_adaptive_avg_pool2d
from mmplug_agg.deployment.pooling import adaptive_max_pool2d as export_adaptive_max_pool2d
from mmplug_agg.deployment.pooling import is_exporting
from mmplug_agg.models.layers.channel_check import check_in_channels
from mmplug_agg.registry import register_neck

POOLING_TYPES = ('AVG', 'MAX')
POOLING_SIZES = ('floor', 'ceil')


def check_channel_list(in_channels, owner: str) -> List[int]:
    """``in_channels`` as a list of positive ints, or a ValueError naming it."""
    if isinstance(in_channels, (list, tuple)) and in_channels and all(
            isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in in_channels):
        return list(in_channels)
    raise ValueError(f'{owner}: in_channels must be a non-empty list with the channel count '
                     f'of every branch (positive ints), got {in_channels!r}')


def check_branches(branches: Sequence[Tensor],
                   in_channels: Sequence[int],
                   owner: str,
                   indices: Optional[Sequence[int]] = None) -> None:
    """Raise a ValueError unless ``branches`` fit ``in_channels`` and shrink in size.

    ``indices`` are the positions the branches were taken from (for messages).
    """
    indices = list(range(len(branches))) if indices is None else list(indices)
    for k, (branch, channels) in enumerate(zip(branches, in_channels)):
        if not isinstance(branch, Tensor) or branch.dim() != 4:
            raise ValueError(f'{owner}: inputs[{indices[k]}] must be an (N, C, H, W) tensor, '
                             f'got {getattr(branch, "shape", type(branch))}')
        if branch.shape[1] != channels:
            widths = [int(b.shape[1]) for b in branches]
            raise ValueError(f'{owner}: in_channels={list(in_channels)} does not match the '
                             f'channels of the branches, {widths} (in_channels[{k}]={channels} '
                             f'but inputs[{indices[k]}] has {branch.shape[1]})')
    for k in range(1, len(branches)):
        (h0, w0), (h1, w1) = branches[k - 1].shape[-2:], branches[k].shape[-2:]
        if h1 > h0 or w1 > w0:
            sizes = [tuple(b.shape[-2:]) for b in branches]
            raise ValueError(f'{owner}: inputs must go from the highest resolution down, but '
                             f'the branch sizes are {sizes} (inputs[{indices[k]}] is larger '
                             f'than inputs[{indices[k - 1]}])')


def can_project_first(conv: ConvModule) -> bool:
    """Whether ``conv`` is a plain conv-norm-act 1x1 conv that commutes with resizing.

    A 1x1 conv mixes channels at each pixel and bilinear resizing mixes pixels in
    each channel, so for a plain ``nn.Conv2d`` the two can be swapped.
    """
    layer = conv.conv
    return (type(layer) is nn.Conv2d and layer.kernel_size == (1, 1) and layer.stride == (1, 1)
            and layer.groups == 1 and layer.padding in ((0, 0), 0)
            and not conv.with_explicit_padding and not conv.with_spectral_norm
            and tuple(conv.order) == ('conv', 'norm', 'act'))


def resize_concat_conv(branches: Sequence[Tensor],
                       conv: ConvModule,
                       align_corners: bool = False,
                       project_first: bool = True) -> Tensor:
    """``conv(cat([resize(b, size of branches[0]) for b in branches]))``.

    With ``project_first`` (and a ``conv`` for which :func:`can_project_first`
    holds) each branch goes through its slice of the 1x1 weight at its own
    resolution and only the projected maps are resized and summed: the same
    linear map with far fewer multiply-adds at full resolution, and no
    full-resolution concatenation held for the backward pass. The bias is added
    once; norm and activation follow the sum as they follow the conv.
    """
    size = branches[0].shape[-2:]
    if not project_first:
        resized = [branches[0]]
        for branch in branches[1:]:
            if branch.shape[-2:] != size:
                branch = F.interpolate(branch,
                                       size=size,
                                       mode='bilinear',
                                       align_corners=align_corners)
            resized.append(branch)
        return conv(torch.cat(resized, dim=1) if len(resized) > 1 else resized[0])

    layer = conv.conv
    weights = layer.weight.split([b.shape[1] for b in branches], dim=1)
    out = F.conv2d(branches[0], weights[0], layer.bias)
    for branch, weight in zip(branches[1:], weights[1:]):
        projected = F.conv2d(branch, weight)
        if projected.shape[-2:] != size:
            projected = F.interpolate(projected,
                                      size=size,
                                      mode='bilinear',
                                      align_corners=align_corners)
        # In place: a conv's output is not kept for its backward pass.
        out = out.add_(projected)
    if conv.with_norm:
        out = conv.norm(out)
    if conv.with_activation:
        out = conv.activate(out)
    return out


def pyramid_sizes(height: int,
                  width: int,
                  num_levels: int,
                  rounding: str = 'ceil') -> List[Tuple[int, int]]:
    """Level i has size ceil(h / 2**i) x ceil(w / 2**i) (as i stride-2 convs give)
    or, with ``rounding='floor'``, floor(h / 2**i) x floor(w / 2**i) (as a pooling
    with kernel and stride 2**i gives)."""
    if rounding == 'floor':
        return [(height // 2**i, width // 2**i) for i in range(num_levels)]
    sizes = [(height, width)]
    for _ in range(1, num_levels):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


@register_neck
class HRNetV2pNeck(BaseModule):
    """HRNetV2p feature pyramid over the parallel branches of a backbone.

    Args:
        in_channels (list[int]): Channels of each branch, highest resolution
            first (HRNet-W32: ``[32, 64, 128, 256]``).
        out_channels (int): Channels of every pyramid level.
        num_outs (int): Number of pyramid levels; level i is pooled by 2**i
            from the first branch's size h x w (see ``pooling_size``).
        pooling_type (str): ``'AVG'`` or ``'MAX'``.
        pooling_size (str): How level i's size is rounded where 2**i does not
            divide h or w. ``'ceil'`` (default): ceil(h / 2**i) x ceil(w / 2**i),
            the size i stride-2 convs give, by adaptive pooling over every row.
            ``'floor'``: floor(h / 2**i) x floor(w / 2**i), pooling with kernel
            and stride 2**i that drops the last rows, as mmdet's HRFPN and the
            official HRNet detection code do (needed for their checkpoints to
            predict as there; the two agree where 2**i divides h and w).
        conv_cfg (dict, optional): Conv layer config of all convs.
        norm_cfg (dict, optional): Norm layer config, applied after the 1x1
            reduction and after every 3x3 level conv.
        act_cfg (dict, optional): Activation after the 3x3 level convs. None
            (the default) matches mmdet's HRFPN; the reduction never has one.
        with_cp (bool): Recompute the reduction and the level convs in the
            backward pass (gradient checkpointing) to save memory.
        project_first (bool): Compute the 1x1 reduction per branch before
            resizing (see :func:`resize_concat_conv`); only used when the
            reduction is a plain ``nn.Conv2d``. False resizes and concatenates
            first, as HRFPN does.
        init_cfg (dict or list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int = 5,
                 pooling_type: str = 'AVG',
                 pooling_size: str = 'ceil',
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 project_first: bool = True,
                 init_cfg=dict(type='Caffe2Xavier', layer='Conv2d')):
        super().__init__(init_cfg)
        name = type(self).__name__
        self.in_channels = check_channel_list(in_channels, name)
        if not isinstance(out_channels, int) or isinstance(out_channels, bool) or out_channels < 1:
            raise ValueError(f'{name}: out_channels must be a positive int, got {out_channels!r}')
        if not isinstance(num_outs, int) or isinstance(num_outs, bool) or num_outs < 1:
            raise ValueError(f'{name}: num_outs must be a positive int, got {num_outs!r}')
        if not isinstance(pooling_type, str) or pooling_type.upper() not in POOLING_TYPES:
            raise ValueError(f'{name}: pooling_type must be one of {POOLING_TYPES}, '
                             f'got {pooling_type!r}')
        if not isinstance(pooling_size, str) or pooling_size.lower() not in POOLING_SIZES:
            raise ValueError(f'{name}: pooling_size must be one of {POOLING_SIZES}, '
                             f'got {pooling_size!r}')
        self.out_channels = out_channels
        self.pooling_size = pooling_size.lower()
        self.num_ins = len(self.in_channels)
        self.num_outs = num_outs
        self.pooling_type = pooling_type.upper()
        self.with_cp = with_cp

        self.reduction_conv = ConvModule(sum(self.in_channels),
                                         out_channels,
                                         kernel_size=1,
                                         conv_cfg=conv_cfg,
                                         norm_cfg=norm_cfg,
                                         act_cfg=None)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels,
                       out_channels,
                       kernel_size=3,
                       padding=1,
                       conv_cfg=conv_cfg,
                       norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for _ in range(num_outs))
        self.project_first = bool(project_first) and can_project_first(self.reduction_conv)

    def _reduce(self, *branches: Tensor) -> Tensor:
        return resize_concat_conv(branches,
                                  self.reduction_conv,
                                  align_corners=False,
                                  project_first=self.project_first)

    def _pool(self, x: Tensor, level: int, size: Tuple[int, int]) -> Tensor:
        if level == 0:
            return x
        factor = 2**level
        pool = F.avg_pool2d if self.pooling_type == 'AVG' else F.max_pool2d
        if self.pooling_size == 'floor':
            # Strided pooling floors at any size, exported graphs included.
            return pool(x, kernel_size=factor, stride=factor)
        if is_exporting():
            # Divisibility is a property of one traced size: the graph takes the adaptive
            # bins (equal to strided pooling where the size divides) at any size.
            if self.pooling_type == 'AVG':
                return export_adaptive_avg_pool2d(x, size)
            return export_adaptive_max_pool2d(x, size, max_bin=factor + 1)
        if x.shape[-2] % factor == 0 and x.shape[-1] % factor == 0:
            # Divisible: plain strided pooling gives the size exactly.
            return pool(x, kernel_size=factor, stride=factor)
        pool = F.adaptive_avg_pool2d if self.pooling_type == 'AVG' else F.adaptive_max_pool2d
        return pool(x, size)

    def _maybe_checkpoint(self, fn, *args: Tensor) -> Tensor:
        if self.with_cp and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != self.num_ins:
            count = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f'{name}: in_channels={self.in_channels} lists {self.num_ins} '
                             f'branches but the backbone gave {count} inputs')
        check_in_channels(f'{name} (neck)', inputs, self.in_channels)
        check_branches(inputs, self.in_channels, name)
        reduced = self._maybe_checkpoint(self._reduce, *inputs)
        sizes = pyramid_sizes(reduced.shape[-2], reduced.shape[-1], self.num_outs,
                              self.pooling_size)
        if self.pooling_size == 'floor' and not is_exporting() and min(sizes[-1]) < 1:
            raise ValueError(
                f"{name}: with pooling_size='floor' level {self.num_outs - 1} pools by "
                f'{2**(self.num_outs - 1)}, more than the first branch\'s size '
                f'{tuple(reduced.shape[-2:])}: use a larger input, fewer num_outs or '
                "pooling_size='ceil'")
        outs = []
        for level, (conv, size) in enumerate(zip(self.fpn_convs, sizes)):
            outs.append(self._maybe_checkpoint(conv, self._pool(reduced, level, size)))
        return tuple(outs)
