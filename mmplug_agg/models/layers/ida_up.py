"""Iterative and hierarchical deep aggregation for upsampling: IDA-Up and DLA-Up.

Yu, Wang, Shelhamer and Darrell, "Deep Layer Aggregation", CVPR 2018. IDA-Up
brings maps of decreasing resolution to the resolution of the first one and
merges them one after another through aggregation nodes; DLA-Up applies IDA-Up
from the deepest level towards the finest, so that every merge sees features
that were already aggregated.

Two flavours of node are offered:

* ``'concat'`` (the paper, ucbdrive/dla): a node convolves the concatenation of
  the running aggregate and the next input; inputs are projected only when
  their width differs from the output width (1x1 conv by default).
* ``'sum'`` (CenterNet, Zhou et al. 2019): a node convolves the sum of the two;
  every input after the first is projected, even at the right width (a 3x3
  deformable conv in CenterNet: ``projection_kernel_size=3`` and
  ``conv_cfg=dict(type='DCNv2', deform_groups=1)``).

Upsampling is either the paper's learnable depthwise transposed conv that
starts as bilinear interpolation (``'deconv'``) or a parameter-free bilinear
resize (``'bilinear'``). Both land on the exact size of the first input, so maps
of ceil- or floor-divided sizes work.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_upsample_layer
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

NODE_TYPES = ('concat', 'sum')
UPSAMPLE_MODES = ('deconv', 'bilinear')


def bilinear_kernel(kernel_size: int) -> Tensor:
    """The ``kernel_size`` x ``kernel_size`` kernel of bilinear upsampling.

    A transposed conv with kernel ``2f``, stride ``f`` and padding ``f // 2``
    carrying this kernel interpolates like ``F.interpolate(...,
    scale_factor=f, mode='bilinear', align_corners=False)`` away from the border.

    Example:
        >>> bilinear_kernel(4)[0]
        tensor([0.0625, 0.1875, 0.1875, 0.0625])
    """
    factor = math.ceil(kernel_size / 2)
    center = (2 * factor - 1 - factor % 2) / (2 * factor)
    taps = 1 - (torch.arange(kernel_size, dtype=torch.float64) / factor - center).abs()
    return torch.outer(taps, taps).float()


def fill_bilinear_(deconv: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """Write :func:`bilinear_kernel` into every channel of a depthwise deconv."""
    kernel = bilinear_kernel(deconv.kernel_size[0])
    with torch.no_grad():
        deconv.weight.copy_(kernel.expand_as(deconv.weight))
    return deconv


def fit_size(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop the bottom and right of ``x``, or repeat its last rows and columns, to ``size``.

    Both keep the top-left corner fixed, which is where the maps of a
    stride-2 backbone stay aligned whether it ceil- or floor-divides.
    """
    height, width = x.shape[-2:]
    if height > size[0] or width > size[1]:
        x = x[..., :size[0], :size[1]]
        height, width = x.shape[-2:]
    if height < size[0] or width < size[1]:
        x = F.pad(x, (0, size[1] - width, 0, size[0] - height), mode='replicate')
    return x


def _check_option(owner: str, name: str, value, choices: Sequence) -> None:
    if value not in choices:
        raise ValueError(f'{owner}: {name} must be one of {tuple(choices)}, got {value!r}')


def _check_kernel_size(owner: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or value % 2 == 0:
        raise ValueError(f'{owner}: {name} must be a positive odd int (the convs keep the map '
                         f'size), got {value!r}')


def _check_int_list(owner: str, name: str, value, what: str) -> List[int]:
    if isinstance(value, (list, tuple)) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return list(value)
    raise ValueError(f'{owner}: {name} must be a non-empty list of positive ints ({what}), '
                     f'got {value!r}')


def check_scales(owner: str, scales, num_levels: int) -> List[int]:
    """``scales`` (default ``1, 2, 4, ...``) as a list, or a ValueError naming it.

    Each scale must divide the next so that every upsampling factor is an int.
    """
    if scales is None:
        return [2**i for i in range(num_levels)]
    scales = _check_int_list(
        owner, 'scales', scales, 'the stride of each input relative to '
        'the others, e.g. [1, 2, 4, 8]')
    if len(scales) != num_levels or any(b % a for a, b in zip(scales, scales[1:])):
        raise ValueError(f'{owner}: scales must give one stride per input ({num_levels}), each '
                         f'dividing the next (e.g. [1, 2, 4, 8]), got {scales}')
    return scales


class IDAUp(BaseModule):
    """Iterative deep aggregation of maps upsampled to the first one's resolution.

    Input ``i`` is projected to ``out_channels`` (see ``node_type``), upsampled
    by ``up_factors[i]`` and merged into the running aggregate ``x`` (which
    starts as input 0) by node ``i``: ``x = node_i(cat(x, input_i))`` or
    ``x = node_i(x + input_i)``. Every upsampled map is cropped (or edge-padded)
    to the size of input 0 times ``up_factors[0]``.

    Args:
        out_channels (int): Channels of the projections, nodes and output.
        in_channels (list[int]): Channels of each input.
        up_factors (list[int]): Upsampling factor of each input; DLA-Up uses
            ``[1, 2, 2, ...]``.
        node_type (str): ``'concat'`` (paper: a node convolves
            ``2 * out_channels`` channels; inputs are projected only when
            their width differs) or ``'sum'`` (CenterNet: a node convolves the
            sum; every input but the first is projected). Defaults to
            ``'concat'``.
        projection_kernel_size (int): Kernel of the projections, 1 (paper) or
            3 (CenterNet). Defaults to 1.
        node_kernel_size (int): Kernel of the nodes. Defaults to 3.
        upsample_mode (str): ``'deconv'``: learnable depthwise transposed conv
            (kernel ``2f``, stride ``f``) initialised to bilinear upsampling;
            ``'bilinear'``: bilinear resize, no parameters. Defaults to
            ``'deconv'``.
        conv_cfg (dict, optional): Conv layer of projections and nodes, e.g.
            ``dict(type='DCNv2', deform_groups=1)`` for CenterNet's deformable
            convs. Defaults to None (``nn.Conv2d``).
        norm_cfg (dict, optional): Norm layer. Defaults to BN.
        act_cfg (dict, optional): Activation. Defaults to ReLU.
        init_cfg (dict | list[dict], optional): Initialisation config. The
            deconvs are set to bilinear upsampling and the offsets of
            deformable convs to zero after it (a ``'Pretrained'`` config is
            applied last and overrides both). Defaults to None: the convs keep
            ConvModule's Kaiming initialisation.

    Example:
        >>> import torch
        >>> ida = IDAUp(64, in_channels=[64, 128, 128], up_factors=[1, 2, 2])
        >>> feats = [torch.rand(1, 64, 42, 65), torch.rand(1, 128, 21, 33),
        ...          torch.rand(1, 128, 21, 33)]
        >>> x, nodes = ida(feats)
        >>> tuple(x.shape), len(nodes)
        ((1, 64, 42, 65), 2)
    """

    def __init__(self,
                 out_channels: int,
                 in_channels: Sequence[int],
                 up_factors: Sequence[int],
                 node_type: str = 'concat',
                 projection_kernel_size: int = 1,
                 node_kernel_size: int = 3,
                 upsample_mode: str = 'deconv',
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        if not isinstance(out_channels, int) or isinstance(out_channels, bool) or out_channels < 1:
            raise ValueError(f'{name}: out_channels must be a positive int, got {out_channels!r}')
        in_channels = _check_int_list(name, 'in_channels', in_channels, 'one per input')
        up_factors = _check_int_list(name, 'up_factors', up_factors, 'one per input')
        if len(up_factors) != len(in_channels):
            raise ValueError(f'{name}: up_factors={up_factors} must give one factor per entry '
                             f'of in_channels={in_channels}')
        _check_option(name, 'node_type', node_type, NODE_TYPES)
        _check_option(name, 'upsample_mode', upsample_mode, UPSAMPLE_MODES)
        _check_kernel_size(name, 'projection_kernel_size', projection_kernel_size)
        _check_kernel_size(name, 'node_kernel_size', node_kernel_size)

        self.out_channels = out_channels
        self.in_channels = in_channels
        self.up_factors = up_factors
        self.node_type = node_type
        self.upsample_mode = upsample_mode
        conv_kwargs = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)

        self.projections = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for index, (channels, factor) in enumerate(zip(in_channels, up_factors)):
            # CenterNet projects every merged input even at the right width; the
            # paper (and CenterNet for input 0) only adapts widths.
            if channels != out_channels or (node_type == 'sum' and index > 0):
                self.projections.append(
                    ConvModule(channels,
                               out_channels,
                               projection_kernel_size,
                               padding=projection_kernel_size // 2,
                               **conv_kwargs))
            else:
                self.projections.append(nn.Identity())
            if upsample_mode == 'deconv' and factor > 1:
                self.upsamples.append(
                    fill_bilinear_(
                        build_upsample_layer(dict(type='deconv'),
                                             in_channels=out_channels,
                                             out_channels=out_channels,
                                             kernel_size=2 * factor,
                                             stride=factor,
                                             padding=factor // 2,
                                             groups=out_channels,
                                             bias=False)))
            else:
                self.upsamples.append(nn.Identity())

        node_in = 2 * out_channels if node_type == 'concat' else out_channels
        self.nodes = nn.ModuleList(
            ConvModule(node_in,
                       out_channels,
                       node_kernel_size,
                       padding=node_kernel_size // 2,
                       **conv_kwargs) for _ in in_channels[1:])

    def init_weights(self) -> None:
        super().init_weights()
        # A Conv2d-wide init_cfg (here or in a parent) also reaches the
        # deconvs and the offset convs of deformable layers; restore the start
        # the method relies on: bilinear upsampling, and deformable convs that
        # begin as plain convs.
        for module in self.upsamples:
            if isinstance(module, nn.ConvTranspose2d):
                fill_bilinear_(module)
        for module in self.modules():
            offset = getattr(module, 'conv_offset', None)
            if isinstance(offset, nn.Conv2d):
                nn.init.zeros_(offset.weight)
                if offset.bias is not None:
                    nn.init.zeros_(offset.bias)

    def extra_repr(self) -> str:
        return (f'node_type={self.node_type!r}, upsample_mode={self.upsample_mode!r}, '
                f'up_factors={self.up_factors}')

    def _check_inputs(self, inputs: Sequence[Tensor]) -> None:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.in_channels):
            count = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f'{name}: expected a list of {len(self.in_channels)} maps '
                             f'(in_channels={self.in_channels}), got {count}')
        widths = [int(x.shape[1]) for x in inputs]
        if widths != self.in_channels:
            raise ValueError(f'{name}: in_channels={self.in_channels} does not match the '
                             f'channels of the inputs, {widths}')

    def _upsample(self, index: int, x: Tensor, size: Tuple[int, int]) -> Tensor:
        """Input ``index`` (already projected) at exactly ``size``."""
        if self.upsample_mode == 'bilinear':
            if tuple(x.shape[-2:]) == size:
                return x
            return F.interpolate(x, size=size, mode='bilinear', align_corners=False)
        factor = self.up_factors[index]
        # Ceil or floor division leaves the input at most one coarse pixel off;
        # a larger gap means the factor does not match the input's stride.
        if any(abs(n * factor - s) >= factor for n, s in zip(x.shape[-2:], size)):
            raise ValueError(f'{type(self).__name__}: input {index} of size {tuple(x.shape[-2:])} '
                             f'upsampled by up_factors[{index}]={factor} cannot reach {size}; the '
                             'factors (or scales) must match the strides of the inputs')
        return fit_size(self.upsamples[index](x), size)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, List[Tensor]]:
        """The final aggregate and every node's output, in order.

        The final aggregate is the last node output (input 0, projected and
        upsampled, when there is a single input).
        """
        self._check_inputs(inputs)
        height, width = inputs[0].shape[-2:]
        size = (height * self.up_factors[0], width * self.up_factors[0])
        feats = [
            self._upsample(index, projection(x), size)
            for index, (projection, x) in enumerate(zip(self.projections, inputs))
        ]
        x = feats[0]
        node_outputs = []
        for node, feat in zip(self.nodes, feats[1:]):
            merged = torch.cat([x, feat], dim=1) if self.node_type == 'concat' else x + feat
            x = node(merged)
            node_outputs.append(x)
        return x, node_outputs


class DLAUp(BaseModule):
    """Hierarchical aggregation of a feature pyramid by repeated IDA-Up.

    With ``n`` inputs (finest first), stage ``k = 0 .. n - 2`` is an
    :class:`IDAUp` at level ``j = n - 2 - k`` with ``in_channels[j]`` outputs:
    it merges input ``j`` with the node outputs of the previous stage (one
    level coarser, so its factors are ``[1, s, s, ...]`` with ``s =
    scales[j + 1] // scales[j]``), and its node outputs replace the maps above
    level ``j`` for the next stage.

    The result is a list in pyramid order, finest first: entry ``j < n - 1``
    is the final aggregate of the stage at level ``j`` (``in_channels[j]``
    channels, the size of input ``j``), and the last entry is the coarsest
    input itself. Entry 0 is DLA-Up's output in the paper; the whole list is
    what CenterNet's DLA-Up returns.

    Args:
        in_channels (list[int]): Channels of the inputs, finest first (at
            least two); stage outputs keep these widths.
        scales (list[int], optional): Stride of each input relative to the
            others, each dividing the next. Defaults to ``1, 2, 4, ...``.
        node_type, projection_kernel_size, node_kernel_size, upsample_mode,
        conv_cfg, norm_cfg, act_cfg: As in :class:`IDAUp`.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None.

    Example:
        >>> import torch
        >>> dla_up = DLAUp([64, 128, 256, 512])
        >>> sizes = [(84, 130), (42, 65), (21, 33), (11, 17)]  # a 333x517 image
        >>> feats = [torch.rand(1, c, h, w) for c, (h, w) in zip([64, 128, 256, 512], sizes)]
        >>> [tuple(out.shape[1:]) for out in dla_up(feats)]
        [(64, 84, 130), (128, 42, 65), (256, 21, 33), (512, 11, 17)]
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 scales: Optional[Sequence[int]] = None,
                 node_type: str = 'concat',
                 projection_kernel_size: int = 1,
                 node_kernel_size: int = 3,
                 upsample_mode: str = 'deconv',
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        in_channels = _check_int_list(name, 'in_channels', in_channels,
                                      'the width of each input, finest first')
        if len(in_channels) < 2:
            raise ValueError(f'{name}: in_channels must list at least 2 inputs to aggregate, '
                             f'got {in_channels}')
        num_levels = len(in_channels)
        self.in_channels = in_channels
        self.scales = check_scales(name, scales, num_levels)

        # Widths and strides of the maps each stage sees; a stage's node
        # outputs replace the maps above its level at its level's width and stride.
        channels, scales = list(in_channels), list(self.scales)
        self.stages = ModuleList()
        for level in range(num_levels - 2, -1, -1):
            factors = [s // scales[level] for s in scales[level:]]
            self.stages.append(
                IDAUp(in_channels[level],
                      channels[level:],
                      factors,
                      node_type=node_type,
                      projection_kernel_size=projection_kernel_size,
                      node_kernel_size=node_kernel_size,
                      upsample_mode=upsample_mode,
                      conv_cfg=conv_cfg,
                      norm_cfg=norm_cfg,
                      act_cfg=act_cfg))
            scales[level + 1:] = [scales[level]] * (num_levels - level - 1)
            channels[level + 1:] = [in_channels[level]] * (num_levels - level - 1)

    def forward(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        """One map per input, finest first (see the class docstring)."""
        if not isinstance(inputs, (list, tuple)) or len(inputs) != len(self.in_channels):
            count = len(inputs) if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f'{type(self).__name__}: expected {len(self.in_channels)} maps '
                             f'(in_channels={self.in_channels}), got {count}')
        widths = [int(x.shape[1]) for x in inputs]
        if widths != self.in_channels:
            raise ValueError(f'{type(self).__name__}: in_channels={self.in_channels} does not '
                             f'match the channels of the inputs, {widths}')
        maps = list(inputs)
        outs = [maps[-1]]
        for index, stage in enumerate(self.stages):
            x, node_outputs = stage(maps[-index - 2:])
            maps[-index - 1:] = node_outputs
            outs.insert(0, x)
        return outs
