"""RoI extractors that pool every RoI from every pyramid level (AugFPN).

mmdet's ``SingleRoIExtractor`` maps each RoI to one level by its size. AugFPN
pools each RoI from all levels instead: soft RoI selection learns how to mix the
levels, and consistent supervision puts a loss on every level's pooled feature.
Pooling is one RoIAlign call per level over all RoIs at once.
"""
from typing import List, Optional, Union

import torch
from mmcv.cnn import ConvModule
from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
from torch import Tensor, nn

from mmplug_agg.registry import register_det_module

FUSIONS = ('sigmoid', 'softmax')


@register_det_module
class AllLevelRoIExtractor(BaseRoIExtractor):
    """Pool every RoI from every level: output ``(num_rois, num_levels, C, h, w)``.

    Args:
        roi_layer (dict): The RoI layer, e.g. ``dict(type='RoIAlign',
            output_size=7, sampling_ratio=0)``.
        out_channels (int): Channels of the pooled features.
        featmap_strides (list[int]): Strides of the levels to pool from.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def forward(self, feats: tuple, rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        rois = rois.to(feats[0].dtype)
        return torch.stack(
            [roi_layer(feat, rois) for roi_layer, feat in zip(self.roi_layers, feats)], dim=1)


@register_det_module
class SoftRoIExtractor(AllLevelRoIExtractor):
    """AugFPN's soft RoI selection: a learned, per-position mix of every level.

    Each RoI is pooled from all levels (one RoIAlign call per level); adaptive
    spatial fusion (concat -> 1x1 -> ReLU -> 3x3 -> one map per level ->
    sigmoid) weighs the levels at each position of the pooled grid, and the
    weighted sum is the RoI feature. A drop-in replacement for
    ``SingleRoIExtractor`` in any mmdet RoI head.

    Args:
        roi_layer (dict): The RoI layer, e.g. ``dict(type='RoIAlign',
            output_size=7, sampling_ratio=0)``.
        out_channels (int): Channels of the pyramid (and of the output).
        featmap_strides (list[int]): Strides of the levels to pool from.
        fusion (str): 'sigmoid' (each level's map on its own, as the official
            code) or 'softmax' (across levels). Defaults to 'sigmoid'.
        conv_cfg (dict, optional): Config of the fusion convolutions.
        init_cfg (dict or list[dict], optional): Initialisation config.
            Defaults to Xavier (uniform) for the fusion convolutions, as AugFPN.

    Example:
        >>> import torch
        >>> extractor = SoftRoIExtractor(
        ...     dict(type='RoIAlign', output_size=7, sampling_ratio=0), 256, [4, 8, 16, 32])
        >>> feats = [torch.rand(1, 256, 64 // s, 64 // s) for s in (1, 2, 4, 8)]
        >>> rois = torch.tensor([[0., 4., 4., 40., 60.]])
        >>> tuple(extractor(feats, rois).shape)
        (1, 256, 7, 7)
    """

    def __init__(self,
                 roi_layer: dict,
                 out_channels: int,
                 featmap_strides: List[int],
                 fusion: str = 'sigmoid',
                 conv_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
        super().__init__(roi_layer, out_channels, featmap_strides, init_cfg)
        self.fusion = fusion
        num_levels = len(featmap_strides)
        self.level_weights = nn.Sequential(
            ConvModule(num_levels * out_channels, out_channels, 1, conv_cfg=conv_cfg),
            ConvModule(out_channels, num_levels, 3, padding=1, conv_cfg=conv_cfg, act_cfg=None))

    def forward(self, feats: tuple, rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        pooled = super().forward(feats, rois, roi_scale_factor)
        logits = self.level_weights(pooled.flatten(1, 2))
        weights = logits.sigmoid() if self.fusion == 'sigmoid' else logits.softmax(dim=1)
        return (pooled * weights.unsqueeze(2)).sum(dim=1)
