"""DeepLab v2's ASPP classifier (Chen et al., "DeepLab: Semantic Image Segmentation
with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2017).

ASPP-L of the ResNet-101 model: parallel 3x3 atrous convolutions with rates 6, 12,
18 and 24 on the last backbone map, each one a classifier straight to the class
scores, and the scores of the branches are summed. Unlike v3's ``ASPPHead`` there is
no image pooling, no concatenation and no shared 1x1 projection: the branches are
the classifier.
"""
from typing import Sequence, Union

import torch.nn as nn
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from mmplug_agg.registry import register_seg_module


@register_seg_module
class DeepLabV2Head(BaseDecodeHead):
    """Sum of parallel atrous 3x3 classifiers (DeepLab v2 ASPP-L).

    Args:
        in_channels (int): Channels of the backbone map (2048 for ResNet-101).
        dilations (Sequence[int]): Rate of each branch. Defaults to
            ``(6, 12, 18, 24)`` (ASPP-L).
        in_index (int): Which backbone output to classify. Defaults to -1.
        dropout_ratio (float): Dropout on the input map. Defaults to 0 (the
            ResNet DeepLab v2 has none in its head).
        init_cfg (dict | list[dict]): Defaults to N(0, 0.01) weights and zero
            biases for the branches, as DeepLab v2's classifier.
        **kwargs: Other arguments of mmseg's ``BaseDecodeHead``
            (``num_classes``, ``loss_decode``, ``align_corners``...). The
            head has no hidden layer, so ``channels`` is not taken.

    Example:
        >>> import torch
        >>> head = DeepLabV2Head(in_channels=64, num_classes=19)
        >>> tuple(head([torch.rand(2, 64, 33, 65)]).shape)
        (2, 19, 33, 65)
    """

    def __init__(self,
                 in_channels: int,
                 dilations: Sequence[int] = (6, 12, 18, 24),
                 in_index: int = -1,
                 dropout_ratio: float = 0.,
                 init_cfg: Union[dict, list] = dict(
                     type='Normal', std=0.01, bias=0, override=dict(name='classifiers')),
                 **kwargs) -> None:
        if 'channels' in kwargs:
            raise ValueError('DeepLabV2Head has no hidden layer: drop channels '
                             f'(got channels={kwargs["channels"]!r})')
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be one positive int (the classified map), '
                             f'got {in_channels!r}')
        dilations = tuple(dilations)
        if not dilations or any(not isinstance(d, int) or d < 1 for d in dilations):
            raise ValueError(f'dilations must be positive ints, one per branch, got {dilations}')
        if kwargs.get('input_transform') is not None:
            raise ValueError('DeepLabV2Head classifies one map: input_transform must be None, '
                             f"got {kwargs['input_transform']!r}")
        super().__init__(in_channels, in_channels, in_index=in_index,
                         dropout_ratio=dropout_ratio, init_cfg=init_cfg, **kwargs)
        # The branches classify; BaseDecodeHead's 1x1 classifier would get no gradient.
        del self.conv_seg
        self.dilations = dilations
        self.classifiers = nn.ModuleList(
            nn.Conv2d(in_channels, self.out_channels, 3, padding=d, dilation=d)
            for d in dilations)

    def cls_seg(self, feat: Tensor) -> Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return sum(classifier(feat) for classifier in self.classifiers)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return self.cls_seg(self._transform_inputs(inputs))
