"""RoI extractors that pool every RoI from every pyramid level (AugFPN).

mmdet's ``SingleRoIExtractor`` maps each RoI to one level by its size. AugFPN
pools each RoI from all levels instead: soft RoI selection learns how to mix the
levels, and consistent supervision puts a loss on every level's pooled feature.
Pooling is one RoIAlign call per level over all RoIs at once; on the CPU those
calls gather channels-last rows (``roi_align_levels``), the same numbers as
mmcv's RoIAlign up to float32 summation order at a fraction of its time.
"""
from typing import List, Optional, Union

import torch
from mmcv.cnn import ConvModule
from mmcv.ops import RoIAlign
from mmdet.models.roi_heads.roi_extractors import BaseRoIExtractor
from torch import Tensor, nn

from mmplug_agg.models.layers.multi_level_roi_align import roi_align_levels
from mmplug_agg.registry import register_det_module

FUSIONS = ('sigmoid', 'softmax')
POOLING_IMPLS = ('auto', 'gather', 'roi_layer')


@register_det_module
class AllLevelRoIExtractor(BaseRoIExtractor):
    """Pool every RoI from every level: output ``(num_rois, num_levels, C, h, w)``.

    Args:
        roi_layer (dict): The RoI layer, e.g. ``dict(type='RoIAlign',
            output_size=7, sampling_ratio=0)``.
        out_channels (int): Channels of the pooled features.
        featmap_strides (list[int]): Strides of the levels to pool from.
        pooling_impl (str): How RoIAlign runs. 'roi_layer': the built RoI layers
            (mmcv's kernels); 'gather': :func:`roi_align_levels`, mmcv's
            RoIAlign computed as channels-last row gathers (average pooling with
            ``sampling_ratio > 0`` only); 'auto' (default): 'gather' for CPU
            tensors where the layers allow it, the layers otherwise (mmcv's CUDA
            kernel is already fast, and export keeps its ONNX ``RoiAlign``).
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 roi_layer: dict,
                 out_channels: int,
                 featmap_strides: List[int],
                 pooling_impl: str = 'auto',
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if pooling_impl not in POOLING_IMPLS:
            raise ValueError(f'{type(self).__name__}: pooling_impl must be one of '
                             f'{POOLING_IMPLS}, got {pooling_impl!r}')
        super().__init__(roi_layer, out_channels, featmap_strides, init_cfg)
        self.pooling_impl = pooling_impl
        if pooling_impl == 'gather' and not self._layers_gatherable():
            raise ValueError(
                f"{type(self).__name__}: pooling_impl='gather' needs roi_layer=dict("
                "type='RoIAlign', pool_mode='avg', sampling_ratio > 0), got "
                f'{self.roi_layers[0]}; use pooling_impl=\'auto\' or \'roi_layer\'')

    def _layers_gatherable(self) -> bool:
        # exact type: export swaps in RoI layers of its own, which must be kept
        return all(type(layer) is RoIAlign and layer.pool_mode == 'avg'
                   and layer.sampling_ratio > 0 and not layer.use_torchvision
                   for layer in self.roi_layers)

    def _use_gather(self, feat: Tensor) -> bool:
        if self.pooling_impl == 'roi_layer' or torch.onnx.is_in_onnx_export():
            return False
        if not self._layers_gatherable():
            return False
        return self.pooling_impl == 'gather' or feat.device.type == 'cpu'

    def forward(self, feats: tuple, rois: Tensor,
                roi_scale_factor: Optional[float] = None) -> Tensor:
        if roi_scale_factor is not None:
            rois = self.roi_rescale(rois, roi_scale_factor)
        rois = rois.to(feats[0].dtype)
        if self._use_gather(feats[0]):
            first = self.roi_layers[0]
            return roi_align_levels(feats[:self.num_inputs], rois, tuple(first.output_size),
                                    [layer.spatial_scale for layer in self.roi_layers],
                                    first.sampling_ratio, first.aligned)
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
        pooling_impl (str): See :class:`AllLevelRoIExtractor`. Defaults to 'auto'.
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
                 pooling_impl: str = 'auto',
                 conv_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = dict(
                     type='Xavier', layer='Conv2d', distribution='uniform')) -> None:
        if fusion not in FUSIONS:
            raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
        super().__init__(roi_layer, out_channels, featmap_strides, pooling_impl, init_cfg)
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
