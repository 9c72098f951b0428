"""DLA-Up as a detection neck: CenterNet's single map, or a pyramid for FPN-style heads.

Deep Layer Aggregation (Yu et al., CVPR 2018) aggregates the backbone levels
from deep to shallow with :class:`DLAUp`. CenterNet (Zhou et al., "Objects as
Points", 2019) follows it with one more IDA-Up that merges every DLA-Up output
but the coarsest into a single stride-4 map, which its heads read
(``out_mode='single'``). ``out_mode='pyramid'`` instead hands the DLA-Up
outputs, one per input level, to heads that take a feature pyramid, projected to
a common width like FPN's outputs.
"""
from typing import Optional, Sequence, Tuple

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmplug_agg.models.layers.ida_up import DLAUp, IDAUp
from mmplug_agg.models.layers.channel_check import check_in_channels
from mmplug_agg.registry import register_neck

OUT_MODES = ('single', 'pyramid')


@register_neck
class DLAUpNeck(BaseModule):
    """DLA-Up neck with CenterNet's single output or a projected pyramid.

    ``'single'``: DLA-Up, then an :class:`IDAUp` over the DLA-Up outputs of
    every level but the coarsest (factors ``scales[i] // scales[0]``), giving
    one map at the finest input's stride, returned as a 1-tuple (what mmdet's
    ``CenterNetHead`` takes). ``'pyramid'``: each DLA-Up output (one per input,
    at its stride) goes through a 1x1 conv + norm to ``out_channels``, with no
    activation: heads shared across levels then see every level, including the
    coarsest (a raw backbone map in DLA-Up), on one scale and with signed
    values, as from FPN. ``num_outs`` minus the number of inputs extra levels
    follow by 1x1 max-pooling with stride 2 of the last one, as in mmdet's FPN
    without extra convs.

    Args:
        in_channels (list[int]): Channels of the backbone outputs, finest first
            (at least two). CenterNet-DLA-34: ``[64, 128, 256, 512]``.
        out_mode (str): ``'single'`` or ``'pyramid'``. Defaults to
            ``'single'``.
        out_channels (int, optional): ``'single'``: width of the map (defaults
            to ``in_channels[0]``, CenterNet's 64 for DLA-34); ``'pyramid'``:
            width of every level (required).
        num_outs (int, optional): ``'pyramid'`` only: number of levels, at
            least ``len(in_channels)``. Defaults to ``len(in_channels)``.
        scales (list[int], optional): Relative strides of the inputs. Defaults
            to ``1, 2, 4, ...``.
        node_type (str): ``'concat'`` (paper) or ``'sum'`` (CenterNet). See
            :class:`IDAUp`. Defaults to ``'concat'``.
        projection_kernel_size (int): 1 (paper) or 3 (CenterNet). Defaults
            to 1.
        node_kernel_size (int): Kernel of the aggregation nodes. Defaults to 3.
        upsample_mode (str): ``'deconv'`` or ``'bilinear'``. Defaults to
            ``'deconv'``.
        conv_cfg (dict, optional): Conv layer of the aggregation (projections
            and nodes); ``dict(type='DCNv2', deform_groups=1)`` is CenterNet's.
            The pyramid's 1x1 output projections are plain convs. Defaults to
            None.
        norm_cfg (dict, optional): Norm layer. Defaults to BN.
        act_cfg (dict, optional): Activation of the aggregation. Defaults to
            ReLU.
        init_cfg (dict | list[dict], optional): Initialisation config. Defaults
            to None: ConvModule's Kaiming init (every aggregation conv feeds a
            ReLU), bilinear deconvs, zero deformable offsets.

    Example:
        >>> import torch
        >>> sizes = [(84, 130), (42, 65), (21, 33), (11, 17)]  # a 333x517 image
        >>> feats = [torch.rand(1, c, h, w) for c, (h, w) in zip([64, 128, 256, 512], sizes)]
        >>> neck = DLAUpNeck([64, 128, 256, 512], node_type='sum', projection_kernel_size=3)
        >>> [tuple(out.shape) for out in neck(feats)]
        [(1, 64, 84, 130)]
        >>> neck = DLAUpNeck([64, 128, 256, 512], out_mode='pyramid', out_channels=256,
        ...                  num_outs=5)
        >>> [tuple(out.shape[2:]) for out in neck(feats)]
        [(84, 130), (42, 65), (21, 33), (11, 17), (6, 9)]
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 out_mode: str = 'single',
                 out_channels: Optional[int] = None,
                 num_outs: Optional[int] = None,
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
        if out_mode not in OUT_MODES:
            raise ValueError(f'{name}: out_mode must be one of {OUT_MODES}, got {out_mode!r}')
        aggregation = dict(node_type=node_type,
                           projection_kernel_size=projection_kernel_size,
                           node_kernel_size=node_kernel_size,
                           upsample_mode=upsample_mode,
                           conv_cfg=conv_cfg,
                           norm_cfg=norm_cfg,
                           act_cfg=act_cfg)
        self.dla_up = DLAUp(in_channels, scales=scales, **aggregation)
        in_channels = self.dla_up.in_channels
        num_ins = len(in_channels)
        if out_channels is not None and (not isinstance(out_channels, int)
                                         or isinstance(out_channels, bool) or out_channels < 1):
            raise ValueError(f'{name}: out_channels must be a positive int, got {out_channels!r}')
        self.in_channels = in_channels
        self.out_mode = out_mode

        if out_mode == 'single':
            if num_outs not in (None, 1):
                raise ValueError(f"{name}: num_outs={num_outs!r} but out_mode='single' gives "
                                 "one map; leave num_outs unset or use out_mode='pyramid'")
            self.out_channels = in_channels[0] if out_channels is None else out_channels
            self.num_outs = 1
            scales = self.dla_up.scales
            self.ida_up = IDAUp(self.out_channels, in_channels[:-1],
                                [s // scales[0] for s in scales[:-1]], **aggregation)
        else:
            if out_channels is None:
                raise ValueError(f"{name}: out_mode='pyramid' needs out_channels, the width "
                                 'of every level (e.g. 256)')
            if num_outs is None:
                num_outs = num_ins
            if not isinstance(num_outs, int) or isinstance(num_outs, bool) or num_outs < num_ins:
                raise ValueError(f'{name}: num_outs={num_outs!r} must be an int >= the '
                                 f'{num_ins} inputs (one level per input, then extra levels)')
            self.out_channels = out_channels
            self.num_outs = num_outs
            self.out_convs = nn.ModuleList(
                ConvModule(channels, out_channels, 1, norm_cfg=norm_cfg, act_cfg=None)
                for channels in in_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        """``(map,)`` in ``'single'`` mode, else ``num_outs`` levels, finest first."""
        check_in_channels('DLAUpNeck (neck)', inputs, self.in_channels)
        outs = self.dla_up(inputs)
        if self.out_mode == 'single':
            x, _ = self.ida_up(outs[:-1])
            return (x, )
        levels = [conv(out) for conv, out in zip(self.out_convs, outs)]
        for _ in range(self.num_outs - len(levels)):
            levels.append(F.max_pool2d(levels[-1], 1, stride=2))
        return tuple(levels)
