"""DeepLab v1's LargeFOV classifier (Chen et al., "Semantic Image Segmentation with
Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015).

VGG-16's fully connected layers turned into convolutions on the stride-8 pool5
map and thinned: fc6 is a 3x3 convolution with dilation ("input stride") 12 and
1024 filters, fc7 a 1x1 convolution with 1024 filters, each followed by ReLU and
dropout 0.5, and fc8 the 1x1 classifier. The released LargeFOV prototxt averages
pool5 over 3x3 windows (stride 1, pad 1: ``pool5a``) before fc6; the paper does not
mention it and DeepLab v2's VGG-16 prototxts drop it (``avg_pool``).
"""
from typing import Sequence, Union

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from mmplug_agg.registry import register_seg_module


@register_seg_module
class LargeFOVHead(BaseDecodeHead):
    """fc6 (3x3, dilation 12) - fc7 (1x1) - fc8 (classifier), DeepLab-LargeFOV.

    Args:
        in_channels (int): Channels of the classified map (512 for VGG-16's pool5).
        channels (int): Filters of fc6 and fc7. Defaults to 1024 (LargeFOV).
        dilation (int): Dilation of fc6. Defaults to 12 (LargeFOV).
        kernel_size (int): Kernel of fc6. Defaults to 3.
        dropout_ratio (float): Element-wise dropout after fc6 and after fc7
            (Caffe's dropout). Defaults to 0.5.
        avg_pool (bool): Average the input over 3x3 windows first (``pool5a`` of
            the released v1 prototxt). Defaults to True.
        in_index (int): Which backbone output to classify. Defaults to -1.
        init_cfg (dict | list[dict]): Defaults to N(0, 0.01) weights and zero
            bias for fc8, as the released prototxt; fc6 and fc7 keep
            ``ConvModule``'s Kaiming init (DeepLab initialises them from
            VGG-16's fc6/fc7 subsampled, which torchvision does not ship).
        **kwargs: Other arguments of mmseg's ``BaseDecodeHead`` (``num_classes``,
            ``norm_cfg``, ``act_cfg``, ``loss_decode``, ``align_corners``...).

    Example:
        >>> import torch
        >>> head = LargeFOVHead(in_channels=64, channels=32, num_classes=21)
        >>> tuple(head([torch.rand(2, 64, 9, 13)]).shape)
        (2, 21, 9, 13)
    """

    def __init__(self,
                 in_channels: int,
                 channels: int = 1024,
                 dilation: int = 12,
                 kernel_size: int = 3,
                 dropout_ratio: float = 0.5,
                 avg_pool: bool = True,
                 in_index: int = -1,
                 init_cfg: Union[dict, list] = dict(
                     type='Normal', std=0.01, bias=0, override=dict(name='conv_seg')),
                 **kwargs) -> None:
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f'in_channels must be one positive int (the classified map), '
                             f'got {in_channels!r}')
        if not isinstance(dilation, int) or dilation < 1:
            raise ValueError(f'dilation must be a positive int, got {dilation!r}')
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'kernel_size must be a positive odd int, got {kernel_size!r}')
        if not 0 <= dropout_ratio < 1:
            raise ValueError(f'dropout_ratio must be in [0, 1), got {dropout_ratio!r}')
        if kwargs.get('input_transform') is not None:
            raise ValueError('LargeFOVHead classifies one map: input_transform must be None, '
                             f"got {kwargs['input_transform']!r}")
        # BaseDecodeHead's own dropout (channel-wise, before conv_seg) is off: the
        # dropouts here are element-wise and sit after fc6 and fc7.
        super().__init__(in_channels, channels, in_index=in_index, dropout_ratio=0.,
                         init_cfg=init_cfg, **kwargs)
        self.dilation = dilation
        self.dropout_ratio = dropout_ratio
        self.pool = nn.AvgPool2d(3, stride=1, padding=1) if avg_pool else nn.Identity()
        conv_args = dict(conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        self.fc6 = ConvModule(in_channels, channels, kernel_size,
                              padding=dilation * (kernel_size // 2), dilation=dilation,
                              **conv_args)
        self.drop6 = nn.Dropout(dropout_ratio)
        self.fc7 = ConvModule(channels, channels, 1, **conv_args)
        self.drop7 = nn.Dropout(dropout_ratio)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        x = self.pool(self._transform_inputs(inputs))
        x = self.drop6(self.fc6(x))
        x = self.drop7(self.fc7(x))
        return self.cls_seg(x)
