"""PANet's adaptive feature pooling (Liu et al., CVPR 2018) as mmdet box and mask heads.

Each RoI is pooled from every pyramid level (``AllLevelRoIExtractor``, output
``(num_rois, num_levels, C, h, w)``). Every level's feature grid passes the
head's first layer on its own, with its own parameters as the official code
(ShuLiu1993/PANet: ``roi_2mlp_head_gn_panet``, ``roi_Xconv1fc_gn_head_panet``,
``mask_rcnn_fcn_head_v1upXconvs_gn_adp``), the levels are fused element-wise
(max, or sum as the paper's ablation), and the rest of the head runs once.
"""
import copy
from typing import Optional

import torch
from mmdet.models.roi_heads.bbox_heads import ConvFCBBoxHead
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from torch import Tensor, nn

from mmplug_agg.registry import register_det_module

FUSIONS = ('max', 'sum')


def _check_fusion(owner: str, fusion: str, num_levels: int) -> None:
    if fusion not in FUSIONS:
        raise ValueError(f'{owner}: fusion must be one of {FUSIONS}, got {fusion!r}')
    if num_levels < 1:
        raise ValueError(f'{owner}: num_levels must be >= 1, got {num_levels}')


def _per_level(layer_list: nn.ModuleList, first: nn.Module, num_levels: int,
               share: bool) -> nn.ModuleList:
    layer_list.append(first)
    if not share:
        # Copies are re-initialised by init_weights, so each level starts on its own draw.
        layer_list.extend(copy.deepcopy(first) for _ in range(num_levels - 1))
    return layer_list


def _levels_first(owner: str, pooled: Tensor, num_levels: int) -> Tensor:
    if pooled.dim() != 5:
        raise ValueError(
            f'{owner} takes every level of each RoI, (num_rois, num_levels, C, h, w); got a '
            f"{pooled.dim()}-d tensor: set the RoI extractor to type='AllLevelRoIExtractor'")
    if pooled.size(1) != num_levels:
        raise ValueError(f'{owner}: the RoI extractor pools {pooled.size(1)} levels, but '
                         f'num_levels is {num_levels}')
    return pooled.transpose(0, 1)


def _fuse(per_level: Tensor, fusion: str) -> Tensor:
    return per_level.amax(dim=0) if fusion == 'max' else per_level.sum(dim=0)


@register_det_module
class AdaptiveFeaturePoolingBBoxHead(ConvFCBBoxHead):
    """:class:`ConvFCBBoxHead` whose first shared layer runs per level, then fuses.

    The first shared layer is the first shared conv when ``num_shared_convs > 0``
    (PANet's 4conv1fc GN head), else the first shared fc (the 2-fc head), each
    with its activation; the levels are fused after it.

    Args:
        num_levels (int): Levels each RoI is pooled from. Defaults to 4 (P2-P5).
        fusion (str): 'max' (PANet) or 'sum'. Defaults to 'max'.
        share_first_layer (bool): One first layer for all levels instead of one
            per level (the official code has one per level). Defaults to False.
        **kwargs: :class:`ConvFCBBoxHead`'s arguments (``num_shared_convs``,
            ``num_shared_fcs``, ``in_channels``, ``fc_out_channels``, ``norm_cfg``,
            ``num_classes``, ``bbox_coder``, losses, ...).

    Example:
        >>> import torch
        >>> head = AdaptiveFeaturePoolingBBoxHead(
        ...     num_shared_fcs=2, in_channels=16, fc_out_channels=32, num_classes=3)
        >>> cls_score, bbox_pred = head(torch.rand(5, 4, 16, 7, 7))
        >>> tuple(cls_score.shape), tuple(bbox_pred.shape)
        ((5, 4), (5, 12))
    """

    def __init__(self,
                 num_levels: int = 4,
                 fusion: str = 'max',
                 share_first_layer: bool = False,
                 init_cfg: Optional[dict] = None,
                 **kwargs) -> None:
        name = type(self).__name__
        _check_fusion(name, fusion, num_levels)
        if kwargs.get('num_shared_convs', 0) + kwargs.get('num_shared_fcs', 0) == 0:
            raise ValueError(f'{name} fuses the levels after its first shared layer: set '
                             'num_shared_fcs >= 1 or num_shared_convs >= 1')
        super().__init__(init_cfg=init_cfg, **kwargs)
        self.num_levels = num_levels
        self.fusion = fusion
        self.first_is_conv = self.num_shared_convs > 0
        if self.first_is_conv:
            first, self.shared_convs = self.shared_convs[0], self.shared_convs[1:]
        else:
            first, self.shared_fcs = self.shared_fcs[0], self.shared_fcs[1:]
        self.level_layers = _per_level(nn.ModuleList(), first, num_levels, share_first_layer)
        if init_cfg is None and not self.first_is_conv:
            self.init_cfg += [dict(type='Xavier', distribution='uniform',
                                   override=dict(name='level_layers'))]

    def _first_layer(self, levels: Tensor) -> Tensor:
        """(L, N, C, h, w) -> (L, N, ...) through the first layer of each level."""
        if not self.first_is_conv:
            if self.with_avg_pool:
                levels = self.avg_pool(levels.flatten(0, 1)).unflatten(0, levels.shape[:2])
            levels = levels.flatten(2)
        if len(self.level_layers) == 1:
            out = self.level_layers[0](levels.flatten(0, 1))
            out = out.unflatten(0, levels.shape[:2])
        else:
            out = torch.stack([layer(level) for layer, level in zip(self.level_layers, levels)])
        return out if self.first_is_conv else self.relu(out)

    def forward(self, x: Tensor) -> tuple:
        levels = _levels_first(type(self).__name__, x, self.num_levels)
        x = _fuse(self._first_layer(levels), self.fusion)

        for conv in self.shared_convs:
            x = conv(x)
        if self.num_shared_fcs > 0:
            if x.dim() > 2:
                if self.with_avg_pool:
                    x = self.avg_pool(x)
                x = x.flatten(1)
            for fc in self.shared_fcs:
                x = self.relu(fc(x))

        x_cls, x_reg = x, x
        for conv in self.cls_convs:
            x_cls = conv(x_cls)
        if x_cls.dim() > 2:
            x_cls = (self.avg_pool(x_cls) if self.with_avg_pool else x_cls).flatten(1)
        for fc in self.cls_fcs:
            x_cls = self.relu(fc(x_cls))
        for conv in self.reg_convs:
            x_reg = conv(x_reg)
        if x_reg.dim() > 2:
            x_reg = (self.avg_pool(x_reg) if self.with_avg_pool else x_reg).flatten(1)
        for fc in self.reg_fcs:
            x_reg = self.relu(fc(x_reg))

        cls_score = self.fc_cls(x_cls) if self.with_cls else None
        bbox_pred = self.fc_reg(x_reg) if self.with_reg else None
        return cls_score, bbox_pred


@register_det_module
class AdaptiveFeaturePoolingMaskHead(FCNMaskHead):
    """:class:`FCNMaskHead` whose first conv runs per level, then fuses (PANet).

    Args:
        num_levels (int): Levels each RoI is pooled from. Defaults to 4.
        fusion (str): 'max' (PANet) or 'sum'. Defaults to 'max'.
        share_first_layer (bool): One first conv for all levels. Defaults to
            False, as the official code.
        **kwargs: :class:`FCNMaskHead`'s arguments (``num_convs`` >= 1, ...).

    Example:
        >>> import torch
        >>> head = AdaptiveFeaturePoolingMaskHead(in_channels=16, conv_out_channels=16,
        ...                                       num_classes=3)
        >>> tuple(head(torch.rand(5, 4, 16, 14, 14)).shape)
        (5, 3, 28, 28)
    """

    def __init__(self,
                 num_levels: int = 4,
                 fusion: str = 'max',
                 share_first_layer: bool = False,
                 **kwargs) -> None:
        name = type(self).__name__
        _check_fusion(name, fusion, num_levels)
        if kwargs.get('num_convs', 4) < 1:
            raise ValueError(f'{name} fuses the levels after its first conv: num_convs must '
                             f"be >= 1, got {kwargs['num_convs']}")
        super().__init__(**kwargs)
        self.num_levels = num_levels
        self.fusion = fusion
        first, self.convs = self.convs[0], self.convs[1:]
        self.level_convs = _per_level(nn.ModuleList(), first, num_levels, share_first_layer)

    def forward(self, x: Tensor) -> Tensor:
        levels = _levels_first(type(self).__name__, x, self.num_levels)
        if len(self.level_convs) == 1:
            per_level = self.level_convs[0](levels.flatten(0, 1)).unflatten(0, levels.shape[:2])
        else:
            per_level = torch.stack([conv(level) for conv, level in zip(self.level_convs, levels)])
        x = _fuse(per_level, self.fusion)
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == 'deconv':
                x = self.relu(x)
        return self.conv_logits(x)
