"""AugFPN (Guo et al., CVPR 2020): FPN with residual feature augmentation.

Of AugFPN's three parts, the neck holds residual feature augmentation (RFA) and
hands out the lateral features that consistent supervision needs; soft RoI
selection lives in ``roi_heads/soft_roi_extractor.py`` and consistent
supervision in ``roi_heads/consistent_supervision_roi_head.py``.
"""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmdet.models.necks import FPN
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmplug_agg.deployment.pooling import adaptive_avg_pool2d as export_adaptive_avg_pool2d
from mmplug_agg.deployment.pooling import is_exporting, ratio_as_fraction, scaled_size
from mmplug_agg.models.layers import PyramidFeatures
from mmplug_agg.models.layers.channel_check import check_in_channels
from mmplug_agg.registry import register_neck

FUSIONS = ('sigmoid', 'softmax')


class ResidualFeatureAugmentation(BaseModule):
    """Ratio-invariant context from the top backbone level (AugFPN's RFA).

    The top input is average-pooled to ``max(1, int(side * ratio))`` for each
    ratio, projected by a 1x1 conv to ``out_channels`` and resized bilinearly back
    to the exact input size. Adaptive spatial fusion then predicts one weight map
    per ratio (concat -> 1x1 -> ReLU -> 3x3) and returns the weighted sum, which
    AugFPN adds to the top lateral feature M5.

    Args:
        in_channels (int): Channels of the top backbone level.
        out_channels (int): Channels of the pyramid.
        pool_ratios (Sequence[float]): Pooling ratios, each in (0, 1].
            Defaults to (0.1, 0.2, 0.3) as the paper.
        fusion (str): How weight maps are normalised: 'sigmoid' (each map on its
            own, as the official code) or 'softmax' (across ratios at each
            pixel, as the paper's description). Defaults to 'sigmoid'.
        align_corners (bool): Of the bilinear resize. Defaults to True, as the
            official code.
        conv_cfg (dict, optional): Config of the convolutions.
        init_cfg (dict or list[dict], optional): Initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 pool_ratios: Sequence[float] = (0.1, 0.2, 0.3),
                 fusion: str = 'sigmoid',
                 align_corners: bool = True,
                 conv_cfg: Optional[dict] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg)
        if not pool_ratios or not all(0 < ratio <= 1 for ratio in pool_ratios):
            raise ValueError(f'pool_ratios must be a non-empty sequence of values in (0, 1], '
                             f'got {pool_ratios}')
        if fusion not in FUSIONS:
            raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
        self.pool_ratios = tuple(pool_ratios)
        self.fusion = fusion
        self.align_corners = align_corners
        num_ratios = len(self.pool_ratios)
        self.context_convs = nn.ModuleList(
            ConvModule(in_channels, out_channels, 1, conv_cfg=conv_cfg, act_cfg=None)
            for _ in self.pool_ratios)
        self.fusion_weights = nn.Sequential(
            ConvModule(num_ratios * out_channels, out_channels, 1, conv_cfg=conv_cfg),
            ConvModule(out_channels, num_ratios, 3, padding=1, conv_cfg=conv_cfg, act_cfg=None))

    def forward(self, top: Tensor) -> Tensor:
        height, width = top.shape[-2:]
        contexts = [
            F.interpolate(
                conv(self._pool(top, ratio)),
                size=(height, width), mode='bilinear', align_corners=self.align_corners)
            for ratio, conv in zip(self.pool_ratios, self.context_convs)
        ]
        logits = self.fusion_weights(torch.cat(contexts, dim=1))
        weights = logits.sigmoid() if self.fusion == 'sigmoid' else logits.softmax(dim=1)
        return (torch.stack(contexts, dim=1) * weights.unsqueeze(2)).sum(dim=1)

    @staticmethod
    def _pool(top: Tensor, ratio: float) -> Tensor:
        height, width = top.shape[-2:]
        if is_exporting():
            # ONNX has no adaptive pooling: the same bins, sized from the traced shape.
            fraction = ratio_as_fraction(ratio)
            return export_adaptive_avg_pool2d(
                top, (scaled_size(height, fraction), scaled_size(width, fraction)))
        return F.adaptive_avg_pool2d(top, (max(1, int(height * ratio)), max(1, int(width * ratio))))


@register_neck
class AugFPN(FPN):
    """FPN with AugFPN's residual feature augmentation, handing out its laterals.

    Takes every argument of mmdet's :class:`FPN`. The residual feature
    augmentation (RFA) reads the top used backbone level and is added to the
    top lateral M5 before the top-down pathway; upsampling in the top-down
    pathway resizes to the exact size of the level below, so any input size
    works. In training the output is a :class:`PyramidFeatures` tuple whose
    ``laterals`` are M2-M5 as they were before RFA and the top-down fusion: the
    features on which consistent supervision puts its auxiliary losses. In eval
    mode the output is a plain tuple, so inference costs nothing extra.

    Args:
        in_channels (list[int]): Channels of each backbone level.
        out_channels (int): Channels of each pyramid level.
        num_outs (int): Number of pyramid levels, at least the number of used
            backbone levels.
        pool_ratios (Sequence[float]): RFA's pooling ratios, each in (0, 1].
            Defaults to (0.1, 0.2, 0.3).
        rfa_fusion (str): RFA's weight normalisation, 'sigmoid' or 'softmax'.
            Defaults to 'sigmoid'.
        with_rfa (bool): Build RFA; False gives FPN that hands out its laterals
            (the ablation without RFA). Defaults to True.
        rfa_to_extra_levels (bool): With ``add_extra_convs``, add RFA's output,
            globally average-pooled, to the first extra level right after its
            conv (so the levels above carry it too), as the official RetinaNet and
            FCOS neck. Defaults to True; no effect without RFA or extra convs.
        **kwargs: The rest of :class:`FPN`'s arguments (``start_level``,
            ``end_level``, ``add_extra_convs``, ``relu_before_extra_convs``,
            ``no_norm_on_lateral``, ``conv_cfg``, ``norm_cfg``, ``act_cfg``,
            ``upsample_cfg``, ``init_cfg``).

    Example:
        >>> import torch
        >>> neck = AugFPN([256, 512, 1024, 2048], 256, num_outs=5).eval()
        >>> inputs = [torch.rand(1, c, 200 // s, 304 // s)
        ...           for c, s in zip([256, 512, 1024, 2048], [1, 2, 4, 8])]
        >>> [tuple(out.shape) for out in neck(inputs)]
        [(1, 256, 200, 304), (1, 256, 100, 152), (1, 256, 50, 76), (1, 256, 25, 38), (1, 256, 13, 19)]
    """

    # ConsistentSupervisionSingleStageDetector checks this at build time.
    hands_out_laterals = True

    def __init__(self,
                 in_channels: List[int],
                 out_channels: int,
                 num_outs: int,
                 pool_ratios: Sequence[float] = (0.1, 0.2, 0.3),
                 rfa_fusion: str = 'sigmoid',
                 with_rfa: bool = True,
                 rfa_to_extra_levels: bool = True,
                 **kwargs) -> None:
        validate_pyramid_args(in_channels, num_outs, kwargs.get('start_level', 0),
                              kwargs.get('end_level', -1))
        super().__init__(in_channels, out_channels, num_outs, **kwargs)
        self.rfa = ResidualFeatureAugmentation(
            in_channels[self.backbone_end_level - 1], out_channels, pool_ratios,
            fusion=rfa_fusion, conv_cfg=kwargs.get('conv_cfg')) if with_rfa else None
        self.rfa_to_extra_levels = rfa_to_extra_levels

    def forward(self, inputs: Tuple[Tensor]) -> tuple:
        check_in_channels(f'{type(self).__name__} (neck)', inputs, self.in_channels)
        laterals = [
            lateral_conv(inputs[i + self.start_level])
            for i, lateral_conv in enumerate(self.lateral_convs)
        ]
        raw_laterals = tuple(laterals)
        rfa_out = None
        if self.rfa is not None:
            rfa_out = self.rfa(inputs[self.backbone_end_level - 1])
            laterals[-1] = laterals[-1] + rfa_out

        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], **self.upsample_cfg)
        outs = [fpn_conv(lateral) for fpn_conv, lateral in zip(self.fpn_convs, laterals)]
        outs += self._extra_levels(inputs, laterals, outs, rfa_out)

        return PyramidFeatures(outs, raw_laterals) if self.training else tuple(outs)

    def _extra_levels(self, inputs: Tuple[Tensor], laterals: List[Tensor],
                      outs: List[Tensor], rfa_out: Optional[Tensor] = None) -> List[Tensor]:
        """Levels above the backbone's, made as mmdet's FPN makes them (plus RFA's global
        context on the first extra conv level when ``rfa_to_extra_levels``)."""
        num_extra = self.num_outs - len(outs)
        if num_extra <= 0:
            return []
        if not self.add_extra_convs:
            extras = [F.max_pool2d(outs[-1], 1, stride=2)]
            while len(extras) < num_extra:
                extras.append(F.max_pool2d(extras[-1], 1, stride=2))
            return extras
        source = {
            'on_input': inputs[self.backbone_end_level - 1],
            'on_lateral': laterals[-1],
            'on_output': outs[-1],
        }[self.add_extra_convs]
        extra_convs = self.fpn_convs[len(outs):]
        extras = [extra_convs[0](source)]
        if rfa_out is not None and self.rfa_to_extra_levels:
            extras[0] = extras[0] + F.adaptive_avg_pool2d(rfa_out, 1)
        for conv in extra_convs[1:]:
            extras.append(conv(F.relu(extras[-1]) if self.relu_before_extra_convs else extras[-1]))
        return extras


def validate_pyramid_args(in_channels: Sequence[int], num_outs: int, start_level: int,
                          end_level: int) -> None:
    """Turn FPN's assertions on its level arguments into errors that name them."""
    if not isinstance(in_channels, (list, tuple)) or not in_channels:
        raise ValueError(f'in_channels must be a non-empty list of ints, got {in_channels!r}')
    num_ins = len(in_channels)
    if not 0 <= start_level < num_ins:
        raise ValueError(f'start_level must be in [0, {num_ins}), got {start_level}')
    end = num_ins if end_level == -1 else end_level + 1
    if not start_level < end <= num_ins:
        raise ValueError(f'end_level must be -1 or in [{start_level}, {num_ins}), '
                         f'got {end_level}')
    if num_outs < end - start_level:
        raise ValueError(f'num_outs ({num_outs}) must be at least the number of used '
                         f'backbone levels ({end - start_level})')
