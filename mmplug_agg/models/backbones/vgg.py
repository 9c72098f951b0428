"""VGG-16 (Simonyan and Zisserman, ICLR 2015), dilated as DeepLab v1 does.

DeepLab v1 (Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets
and Fully Connected CRFs", ICLR 2015) keeps VGG-16's thirteen 3x3 convolutions and
ImageNet weights, and makes the network dense: pool4 and pool5 stop downsampling
(3x3 windows, stride 1, pad 1) and the three conv5 layers dilate by 2, so the last
map has output stride 8 and conv5 sees what it saw before. Its released prototxts
also pool with 3x3 windows (pad 1, ceil mode) where VGG pools 2x2, "to align
responses at different layers"; both poolings are offered (``pooling``).

The layers are one ``features`` sequence laid out exactly as torchvision's
``vgg16`` / ``vgg16_bn`` (conv, [BN], ReLU, ..., pool), so
``init_cfg=dict(type='Pretrained', checkpoint='torchvision://vgg16')`` loads the
ImageNet weights with no conversion (torchvision's classifier is not part of the
backbone and is skipped). DeepLab's fc6/fc7/fc8 live in the decode head
(:class:`~mmplug_agg.models.decode_heads.LargeFOVHead`).
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor

from mmplug_agg.registry import register_backbone

from .frozen_stages import FrozenStagesMixin

# Output channels of the convolutions of each of the five stages.
VGG16_STAGES: Tuple[Tuple[int, ...], ...] = (
    (64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
NUM_STAGES = len(VGG16_STAGES)
# Per output stride: (stride of each stage's pool, dilation of each stage's convs).
OUTPUT_STRIDES = {
    32: ((2, 2, 2, 2, 2), (1, 1, 1, 1, 1)),
    16: ((2, 2, 2, 2, 1), (1, 1, 1, 1, 1)),
    8: ((2, 2, 2, 1, 1), (1, 1, 1, 1, 2)),
}
POOLINGS = ('deeplab', 'vgg')


@register_backbone
class VGG16(FrozenStagesMixin, BaseModule):
    """VGG-16 with DeepLab's dense (atrous) variant, for mmseg and mmdet.

    Stage ``i`` is the convolutions of block ``i + 1`` and the pool that ends it;
    a stage's output is taken after its pool (the last one is pool5, the input of
    DeepLab's fc6).

    Args:
        output_stride (int): 8 (DeepLab v1: pool4 and pool5 at stride 1, conv5
            dilated by 2), 16 (pool5 at stride 1) or 32 (plain VGG-16).
            Defaults to 8.
        pooling (str): Shape of the stride-2 pools. ``'deeplab'`` (default):
            3x3 windows, pad 1, ceil mode, as DeepLab's released prototxts, so an
            input of ``32k - 31`` pixels maps to ``k`` pixels at stride 32.
            ``'vgg'``: VGG's 2x2 windows (torchvision's layers exactly).
            Pools at stride 1 are always 3x3, pad 1.
        in_channels (int): Input image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return, in 0-4 (their pools have
            strides 2, 4, 8, 16, 32 at ``output_stride=32``). Defaults to all.
        norm_cfg (dict, optional): Norm after every convolution (e.g.
            ``dict(type='BN')``: the ``vgg16_bn`` layout). Defaults to None
            (VGG-16 has none).
        conv_cfg (dict, optional): Config of the convolutions.
        frozen_stages (int): Freeze stages ``0..frozen_stages`` (parameters
            fixed, norms in eval mode); -1 freezes nothing. Defaults to -1.
        norm_eval (bool): Keep the norm layers in eval mode while training.
            Defaults to False.
        init_cfg (dict | list[dict], optional): Defaults to Kaiming-normal
            (fan-out) convolutions with zero bias and unit norms, as torchvision.
            ``dict(type='Pretrained', checkpoint='torchvision://vgg16')`` (or
            ``'torchvision://vgg16_bn'`` with a norm) loads ImageNet weights.

    Example:
        >>> import torch
        >>> model = VGG16(out_indices=(2, 4)).eval()
        >>> for feat in model(torch.rand(1, 3, 321, 321)):
        ...     print(tuple(feat.shape))
        (1, 256, 41, 41)
        (1, 512, 41, 41)
    """

    def __init__(self,
                 output_stride: int = 8,
                 pooling: str = 'deeplab',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3, 4),
                 norm_cfg: Optional[dict] = None,
                 conv_cfg: Optional[dict] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d', mode='fan_out', nonlinearity='relu',
                     distribution='normal', bias=0),
                dict(type='Constant', val=1, bias=0, layer=['_BatchNorm', 'GroupNorm']),
            ]
        super().__init__(init_cfg)
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f'output_stride must be one of {sorted(OUTPUT_STRIDES)}, '
                             f'got {output_stride!r}')
        if pooling not in POOLINGS:
            raise ValueError(f'pooling must be one of {POOLINGS}, got {pooling!r}')
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        if (not out_indices or len(set(out_indices)) != len(out_indices)
                or any(not isinstance(i, int) or not 0 <= i < NUM_STAGES for i in out_indices)):
            raise ValueError(f'out_indices must be distinct stages in 0-{NUM_STAGES - 1} '
                             f'(pool1-pool5), got {out_indices}')
        if (not isinstance(frozen_stages, int) or isinstance(frozen_stages, bool)
                or not -1 <= frozen_stages < NUM_STAGES):
            raise ValueError(f'frozen_stages must be in -1..{NUM_STAGES - 1} (-1 freezes '
                             f'nothing), got {frozen_stages!r}')
        self.output_stride = output_stride
        self.pooling = pooling
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        pool_strides, dilations = OUTPUT_STRIDES[output_stride]
        layers: List[nn.Module] = []
        # Index in ``features`` of the last layer (the pool) of each stage.
        self._stage_ends: List[int] = []
        channels = in_channels
        for widths, pool_stride, dilation in zip(VGG16_STAGES, pool_strides, dilations):
            for width in widths:
                layers.append(build_conv_layer(conv_cfg, channels, width, 3, padding=dilation,
                                               dilation=dilation))
                if norm_cfg is not None:
                    layers.append(build_norm_layer(norm_cfg, width)[1])
                layers.append(nn.ReLU(inplace=True))
                channels = width
            if pool_stride == 2 and pooling == 'vgg':
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers.append(nn.MaxPool2d(3, stride=pool_stride, padding=1, ceil_mode=True))
            self._stage_ends.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)
        self._freeze_stages()

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned stages, for a head's ``in_channels``."""
        return [VGG16_STAGES[i][-1] for i in self.out_indices]

    def _stage_layers(self, stage: int) -> nn.Sequential:
        start = 0 if stage == 0 else self._stage_ends[stage - 1] + 1
        return self.features[start:self._stage_ends[stage] + 1]

    def _frozen_modules(self) -> List[nn.Module]:
        return [self._stage_layers(stage) for stage in range(self.frozen_stages + 1)]

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        outs = []
        start = 0
        for stage, end in enumerate(self._stage_ends):
            x = self.features[start:end + 1](x)
            start = end + 1
            if stage in self.out_indices:
                outs.append(x)
            if stage == max(self.out_indices):
                break
        return tuple(outs)
