"""The atrous spatial pyramid pooling that DetectoRS puts on its feedback path.

DetectoRS (Qiao, Chen and Yuille, "DetectoRS: Detecting Objects with Recursive
Feature Pyramid and Switchable Atrous Convolution", CVPR 2021) feeds every
pyramid level back into the backbone through a light ASPP. Unlike DeepLab's
ASPP it has no normalisation and no projection after the concatenation: each
branch is a biased convolution followed by ReLU, and the branch outputs are
simply stacked along the channels, so the module keeps the pyramid's width
when ``out_channels * num_branches`` equals it (64 x 4 for a 256-wide FPN).

The branches are given by ``dilations``: an entry ``1`` is a 1x1 convolution,
an entry ``d > 1`` a 3x3 convolution with dilation and padding ``d`` (the map
size is kept), and the last entry marks the image-level branch: global average
pooling, a 1x1 convolution, and a broadcast back to the map size. DetectoRS
uses ``(1, 3, 6, 1)``.

Initialisation: Kaiming-normal convolutions (fan-out, ReLU gain) with zero
biases, which is what the DetectoRS code does and what mmdet's ``ASPP``
declares. Note that mmdet 3.x never applies that declaration inside ``RFP``
(``RFP.init_weights`` does not reach its ASPP), so there the branches keep
PyTorch's default init; with the weights copied over the two compute the same.
"""
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmplug_agg.registry import register_layer


@register_layer
class DetectoRSASPP(BaseModule):
    """DetectoRS's ASPP: parallel dilated convs plus a pooled branch, concatenated.

    Args:
        in_channels (int): Channels of the input map.
        out_channels (int): Channels of each branch; the output has
            ``out_channels * len(dilations)`` channels.
        dilations (Sequence[int]): One entry per branch. ``1`` gives a 1x1
            conv, ``d > 1`` a 3x3 conv with dilation ``d``; the last entry must
            be 1 and is the global-average-pooled branch.
        init_cfg (dict | list[dict], optional): Initialization; by default
            Kaiming-normal convs with zero biases.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.layers import DetectoRSASPP
        >>> aspp = DetectoRSASPP(256, 64, dilations=(1, 3, 6, 1))
        >>> tuple(aspp(torch.rand(2, 256, 25, 38)).shape)
        (2, 256, 25, 38)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilations: Sequence[int] = (1, 3, 6, 1),
        init_cfg: Union[dict, List[dict], None] = dict(type='Kaiming', layer='Conv2d')
    ) -> None:
        super().__init__(init_cfg)
        for name, value in (('in_channels', in_channels), ('out_channels', out_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be a positive int, got {value!r}')
        dilations = self.check_dilations(dilations)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dilations = dilations
        self.aspp = nn.ModuleList()
        for dilation in dilations:
            kernel_size = 1 if dilation == 1 else 3
            self.aspp.append(
                nn.Conv2d(in_channels,
                          out_channels,
                          kernel_size,
                          padding=dilation * (kernel_size // 2),
                          dilation=dilation,
                          bias=True))
        self.gap = nn.AdaptiveAvgPool2d(1)

    @staticmethod
    def check_dilations(dilations: Sequence[int], name: str = 'dilations') -> Tuple[int, ...]:
        """``dilations`` as a tuple, or a ValueError naming ``name`` if it is not valid."""
        dilations = tuple(dilations)
        if (len(dilations) < 2 or dilations[-1] != 1
                or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dilations)):
            raise ValueError(f'{name} must be at least two positive ints whose last entry is 1 '
                             f'(the image-pooling branch), e.g. (1, 3, 6, 1); got {dilations}')
        return dilations

    @property
    def num_branches(self) -> int:
        return len(self.dilations)

    @property
    def total_channels(self) -> int:
        """Channels of the concatenated output."""
        return self.out_channels * self.num_branches

    def forward(self, x: Tensor) -> Tensor:
        *spatial_convs, pooled_conv = self.aspp
        outs = [F.relu(conv(x)) for conv in spatial_convs]
        pooled = F.relu(pooled_conv(self.gap(x)))
        # A view, not a copy: the concatenation below materialises it once.
        outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
        return torch.cat(outs, dim=1)
