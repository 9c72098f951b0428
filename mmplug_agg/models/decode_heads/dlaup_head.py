"""DLA-Up segmentation head (Yu et al., "Deep Layer Aggregation", CVPR 2018).

The backbone levels from the output stride up to the deepest (DLA-34 levels
2..5 for stride 4, 1..5 for stride 2) are aggregated by :class:`DLAUp`, and a
1x1 classifier with bias maps the finest aggregate, which keeps the finest
level's width, to class logits. mmseg's ``BaseDecodeHead`` resizes the logits
to the label size in ``loss`` and to the image size in ``predict``, which takes
the place of the paper's final fixed bilinear deconv.
"""
from typing import List, Optional, Sequence

from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from mmplug_agg.models.layers.ida_up import DLAUp
from mmplug_agg.registry import register_seg_module


@register_seg_module
class DLAUpHead(BaseDecodeHead):
    """Deep layer aggregation decoder: DLA-Up followed by a 1x1 classifier.

    Args:
        in_channels (list[int]): Channels of the levels, finest first (DLA-34
            at output stride 4: ``[64, 128, 256, 512]``).
        channels (int, optional): Width of the map the classifier reads. DLA-Up
            returns the finest level's width, so it can only be None or
            ``in_channels[0]``. Defaults to None.
        in_index (list[int], optional): Which backbone outputs are the levels.
            Defaults to ``0 .. len(in_channels) - 1``.
        scales (list[int], optional): Relative strides of the levels. Defaults
            to ``1, 2, 4, ...``.
        node_type (str): ``'concat'`` (paper) or ``'sum'`` (CenterNet). See
            :class:`IDAUp`. Defaults to ``'concat'``.
        projection_kernel_size (int): 1 (paper) or 3 (CenterNet). Defaults
            to 1.
        node_kernel_size (int): Kernel of the aggregation nodes. Defaults to 3.
        upsample_mode (str): ``'deconv'`` (learnable, bilinear-initialised) or
            ``'bilinear'``. Defaults to ``'deconv'``.
        norm_cfg (dict, optional): Norm layer of DLA-Up. Defaults to BN.
        dropout_ratio (float): Dropout before the classifier; the paper uses
            none. Defaults to 0.
        **kwargs: Other arguments of mmseg's ``BaseDecodeHead``
            (``num_classes``, ``conv_cfg``, ``act_cfg``, ``loss_decode``,
            ``align_corners``...). ``input_transform`` can only be
            ``'multiple_select'``, which the head sets itself.

    Example:
        >>> import torch
        >>> head = DLAUpHead(in_channels=[64, 128, 256, 512], num_classes=19)
        >>> sizes = [(84, 130), (42, 65), (21, 33), (11, 17)]  # a 333x517 image
        >>> feats = [torch.rand(2, c, h, w) for c, (h, w) in zip([64, 128, 256, 512], sizes)]
        >>> tuple(head(feats).shape)
        (2, 19, 84, 130)
    """

    def __init__(self,
                 in_channels: Sequence[int],
                 channels: Optional[int] = None,
                 *,
                 in_index: Optional[Sequence[int]] = None,
                 scales: Optional[Sequence[int]] = None,
                 node_type: str = 'concat',
                 projection_kernel_size: int = 1,
                 node_kernel_size: int = 3,
                 upsample_mode: str = 'deconv',
                 norm_cfg: Optional[dict] = dict(type='BN', requires_grad=True),
                 dropout_ratio: float = 0.,
                 **kwargs) -> None:
        name = type(self).__name__
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) < 2 or not all(
                isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in in_channels):
            raise ValueError(f'{name}: in_channels must list the widths of at least 2 levels, '
                             f'finest first (positive ints), got {in_channels!r}')
        in_channels = list(in_channels)
        if channels is None:
            channels = in_channels[0]
        elif channels != in_channels[0]:
            raise ValueError(f'{name}: channels={channels!r} must be None or in_channels[0]='
                             f'{in_channels[0]}: DLA-Up outputs the finest level at its own '
                             'width')
        if in_index is None:
            in_index = list(range(len(in_channels)))
        if (not isinstance(in_index, (list, tuple)) or len(in_index) != len(in_channels)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in in_index)):
            raise ValueError(f'{name}: in_index must list one backbone output (int) per entry '
                             f'of in_channels={in_channels}, got {in_index!r}')
        transform = kwargs.pop('input_transform', 'multiple_select')
        if transform != 'multiple_select':
            raise ValueError(f"{name}: input_transform must be 'multiple_select' (DLA-Up "
                             f'aggregates the levels itself), got {transform!r}')
        super().__init__(in_channels,
                         channels,
                         in_index=list(in_index),
                         input_transform='multiple_select',
                         norm_cfg=norm_cfg,
                         dropout_ratio=dropout_ratio,
                         **kwargs)
        self.dla_up = DLAUp(in_channels,
                            scales=scales,
                            node_type=node_type,
                            projection_kernel_size=projection_kernel_size,
                            node_kernel_size=node_kernel_size,
                            upsample_mode=upsample_mode,
                            conv_cfg=self.conv_cfg,
                            norm_cfg=self.norm_cfg,
                            act_cfg=self.act_cfg)

    def forward(self, inputs: List[Tensor]) -> Tensor:
        """Logits at the finest selected level's size."""
        count = len(inputs)
        if any(not -count <= i < count for i in self.in_index):
            raise ValueError(f'{type(self).__name__}: in_index={self.in_index} but the backbone '
                             f'gave {count} inputs')
        levels = self._transform_inputs(inputs)
        return self.cls_seg(self.dla_up(levels)[0])
