"""EfficientDet's class and box nets as an mmdet anchor head.

Tan, Pang and Le, "EfficientDet: Scalable and Efficient Object Detection", CVPR 2020.
"""
import math
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmdet.models.dense_heads import AnchorHead
from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import TASK_UTILS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mmplug_agg.registry import register_det_module

# Focal loss starts from a foreground probability of 1% so that the many background
# anchors do not swamp the first steps (RetinaNet's prior).
CLASS_PRIOR_PROB = 0.01


def separable_conv(in_channels: int, out_channels: int, bias: bool) -> nn.Sequential:
    """A depthwise 3x3 conv followed by a pointwise 1x1 conv.

    The depthwise conv never has a bias: the pointwise conv right after it would
    absorb it.
    """
    return nn.Sequential(
        OrderedDict(
            depthwise=nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels,
                                bias=False),
            pointwise=nn.Conv2d(in_channels, out_channels, 1, bias=bias)))


# effdet's and automl's anchor shapes (width, height multipliers), in mmdet's ratio order
# (ratio h/w 0.5, 1, 2). sqrt(2) is rounded to 1.4, so the wide and tall anchors have
# 0.98 of the square anchor's area.
EFFDET_ASPECTS = ((1.4, 0.7), (1.0, 1.0), (0.7, 1.4))


@TASK_UTILS.register_module()
class EfficientDetAnchorGenerator(AnchorGenerator):
    """mmdet's ``AnchorGenerator`` with anchor shapes given as (width, height) multipliers.

    mmdet derives an anchor of ratio ``r = h / w`` as ``w = s / sqrt(r)``,
    ``h = s * sqrt(r)``; effdet and the TensorFlow EfficientDet checkpoints use the
    rounded pairs (1.4, 0.7) and (0.7, 1.4) instead, so their anchors differ from
    mmdet's by about 1%. This generator takes the pairs as they are, so that converted
    checkpoints decode to exactly the boxes of the original. Everything else
    (strides, octave scales, ``center_offset``, anchor order: shape-major, scale
    minor with ``scale_major=True``) is mmdet's.

    Args:
        aspects (Sequence[tuple[float, float]]): (width, height) multiplier of each
            anchor shape. Defaults to effdet's, in mmdet's ratio order (wide, square,
            tall).
        **kwargs: The other arguments of :class:`AnchorGenerator`; ``ratios`` is
            derived from ``aspects`` (h / w) and must not be given.

    Example:
        >>> gen = EfficientDetAnchorGenerator(
        ...     strides=[8], octave_base_scale=4, scales_per_octave=1, center_offset=0.5)
        >>> gen.base_anchors[0]
        tensor([[-18.4000,  -7.2000,  26.4000,  15.2000],
                [-12.0000, -12.0000,  20.0000,  20.0000],
                [ -7.2000, -18.4000,  15.2000,  26.4000]])
    """

    def __init__(self, aspects: Sequence[Tuple[float, float]] = EFFDET_ASPECTS,
                 **kwargs) -> None:
        if 'ratios' in kwargs:
            raise ValueError('EfficientDetAnchorGenerator: give anchor shapes as aspects '
                             '((width, height) pairs), not ratios')
        aspects = [tuple(float(v) for v in pair) for pair in aspects]
        if not aspects or any(len(pair) != 2 or min(pair) <= 0 for pair in aspects):
            raise ValueError('EfficientDetAnchorGenerator: aspects must be non-empty '
                             f'(width, height) pairs of positive numbers, got {aspects!r}')
        self.aspects = aspects
        super().__init__(ratios=[h / w for w, h in aspects], **kwargs)

    def gen_single_level_base_anchors(self, base_size: Union[int, float], scales: Tensor,
                                      ratios: Tensor,
                                      center: Optional[Tuple[float]] = None) -> Tensor:
        # float64 as effdet's numpy anchors, so both round once to float32.
        x_center = self.center_offset * base_size if center is None else center[0]
        y_center = self.center_offset * base_size if center is None else center[1]
        aspects = torch.tensor(self.aspects, dtype=torch.float64)
        scales = scales.to(torch.float64)
        if self.scale_major:
            ws = (base_size * aspects[:, 0, None] * scales[None, :]).reshape(-1)
            hs = (base_size * aspects[:, 1, None] * scales[None, :]).reshape(-1)
        else:
            ws = (base_size * scales[:, None] * aspects[None, :, 0]).reshape(-1)
            hs = (base_size * scales[:, None] * aspects[None, :, 1]).reshape(-1)
        base_anchors = torch.stack(
            [x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs],
            dim=-1)
        return base_anchors.float()


@register_det_module
class EfficientDetSepBNHead(AnchorHead):
    """EfficientDet's class and box nets: separable convs shared by all levels, BN per level.

    Each of the two nets (class and box, with separate weights) applies to every
    level ``stacked_convs`` times [depthwise 3x3 conv -> pointwise 1x1 conv -> the
    level's own BN -> activation] and then a separable prediction conv (depthwise
    3x3, pointwise 1x1 with bias). The convs are shared by all levels; only the
    norms are per level, since feature statistics differ between strides. Compared
    with mmdet's ``RetinaSepBNHead`` (full 3x3 convs, ReLU, plain prediction conv)
    this is the head of the paper and of ``effdet.efficientdet.HeadNet``, whose
    layer order, bias use and initialisation it follows.

    Output layout: channel ``a * C + c`` of a level's map holds anchor ``a``'s output
    ``c`` (``C`` = ``cls_out_channels`` for the class net, 4 for the box net), the
    anchor-major order that mmdet's ``AnchorHead`` reads with
    ``permute(0, 2, 3, 1).reshape(-1, C)``; anchors follow the anchor generator
    (mmdet: ratio-major, octave scale minor) and box deltas are (dx, dy, dw, dh)
    for ``DeltaXYWHBBoxCoder``. effdet uses the same anchor-major layout, but its
    anchors are octave-major and its deltas (dy, dx, dh, dw), so its checkpoints
    need their prediction rows reordered to be loaded here.

    Test-time selection: with ``test_cfg.nms_pre_all_levels=True`` the ``nms_pre``
    best (anchor, class) pairs above ``score_thr`` are picked over all levels together,
    as automl and effdet do (their 5000 "detection points"), instead of ``nms_pre``
    per level (mmdet's default, kept when the key is absent or False).

    Initialisation (when ``init_cfg`` is None, as in effdet): every conv weight is
    drawn from N(0, 1 / fan_in), with fan_in = input channels per group x kernel
    area (1/9 for the depthwise convs, 1/channels for the pointwise ones); biases
    are zero except the class prediction's, -log((1 - 0.01) / 0.01); norms start
    at weight 1, bias 0. With an ``init_cfg`` that is applied instead.

    Args:
        num_classes (int): Number of categories excluding the background.
        num_ins (int): Number of feature levels; one set of norms each. Must equal
            the anchor generator's number of strides.
        in_channels (int): Channels of every input level.
        feat_channels (int): Channels inside the nets. Defaults to 64 (D0).
        stacked_convs (int): Separable convs before the prediction conv, 3 for
            D0-D2, 4 for D3-D5, 5 for D6-D7. Defaults to 3.
        norm_cfg (dict): Norm after each stacked conv, built once per level and
            conv. Defaults to BN with eps 1e-3 and momentum 0.01 (EfficientDet's).
        act_cfg (dict, optional): Activation after each norm. Defaults to
            ``dict(type='Swish')``; None leaves it out.
        conv_bias (bool): Give the stacked pointwise convs a bias. It is
            redundant before a norm; effdet's ``efficientdet_d*`` models have none,
            TensorFlow's checkpoints (effdet's ``tf_efficientdet_d*``) carry one.
            Defaults to False.
        init_cfg (dict or list[dict], optional): Initialisation config; None
            (default) uses EfficientDet's, described above.
        **kwargs: The other arguments of :class:`AnchorHead`: ``anchor_generator``,
            ``bbox_coder``, ``reg_decoded_bbox``, ``loss_cls``, ``loss_bbox``,
            ``train_cfg``, ``test_cfg``.

    Example:
        >>> import torch
        >>> head = EfficientDetSepBNHead(
        ...     num_classes=80, num_ins=5, in_channels=64, feat_channels=64,
        ...     anchor_generator=dict(
        ...         type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
        ...         ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]))
        >>> feats = [torch.rand(1, 64, s, s) for s in [64, 32, 16, 8, 4]]
        >>> cls_scores, bbox_preds = head(feats)
        >>> for cls_score, bbox_pred in zip(cls_scores, bbox_preds):
        ...     print(tuple(cls_score.shape), tuple(bbox_pred.shape))
        (1, 720, 64, 64) (1, 36, 64, 64)
        (1, 720, 32, 32) (1, 36, 32, 32)
        (1, 720, 16, 16) (1, 36, 16, 16)
        (1, 720, 8, 8) (1, 36, 8, 8)
        (1, 720, 4, 4) (1, 36, 4, 4)
    """

    def __init__(self,
                 num_classes: int,
                 num_ins: int,
                 in_channels: int,
                 feat_channels: int = 64,
                 stacked_convs: int = 3,
                 norm_cfg: ConfigType = dict(type='BN', eps=1e-3, momentum=0.01),
                 act_cfg: OptConfigType = dict(type='Swish'),
                 conv_bias: bool = False,
                 init_cfg: OptMultiConfig = None,
                 **kwargs) -> None:
        for name, value in (('num_ins', num_ins), ('stacked_convs', stacked_convs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'EfficientDetSepBNHead: {name} must be an int >= 1, '
                                 f'got {value!r}')
        if norm_cfg is None:
            raise ValueError('EfficientDetSepBNHead: norm_cfg is required (the nets have a '
                             'norm per level after every stacked conv)')
        # _init_layers runs inside AnchorHead.__init__ and needs these.
        self.num_ins = num_ins
        self.stacked_convs = stacked_convs
        self.norm_cfg = norm_cfg
        self.act_cfg = act_cfg
        self.conv_bias = conv_bias
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            feat_channels=feat_channels,
            init_cfg=init_cfg,
            **kwargs)
        if self.prior_generator.num_levels != num_ins:
            raise ValueError(f'EfficientDetSepBNHead: num_ins is {num_ins}, but the anchor '
                             f'generator has {self.prior_generator.num_levels} strides')

    def _init_layers(self) -> None:
        self.act = None if self.act_cfg is None else build_activation_layer(self.act_cfg)
        self.cls_convs, self.cls_norms = self._stacked_layers()
        self.reg_convs, self.reg_norms = self._stacked_layers()
        self.cls_pred = separable_conv(self.feat_channels,
                                       self.num_base_priors * self.cls_out_channels, bias=True)
        self.reg_pred = separable_conv(self.feat_channels,
                                       self.num_base_priors * self.bbox_coder.encode_size,
                                       bias=True)

    def _stacked_layers(self) -> Tuple[nn.ModuleList, nn.ModuleList]:
        convs = nn.ModuleList(
            separable_conv(self.in_channels if i == 0 else self.feat_channels,
                           self.feat_channels, bias=self.conv_bias)
            for i in range(self.stacked_convs))
        # norms[level][i] follows the i-th shared conv at that level.
        norms = nn.ModuleList(
            nn.ModuleList(
                build_norm_layer(self.norm_cfg, self.feat_channels)[1]
                for _ in range(self.stacked_convs))
            for _ in range(self.num_ins))
        return convs, norms

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()  # input channels per group x kernel area
                nn.init.normal_(module.weight, std=math.sqrt(1.0 / fan_in))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (_BatchNorm, nn.GroupNorm)):
                if module.weight is not None:
                    nn.init.ones_(module.weight)
                    nn.init.zeros_(module.bias)
        nn.init.constant_(self.cls_pred.pointwise.bias,
                          -math.log((1 - CLASS_PRIOR_PROB) / CLASS_PRIOR_PROB))
        # What BaseModule.init_weights would record, so that the detector's init_weights
        # does not initialise the head a second time.
        self._is_init = True

    def _net(self, x: Tensor, level: int, convs: nn.ModuleList, norms: nn.ModuleList,
             pred: nn.Module) -> Tensor:
        for conv, norm in zip(convs, norms[level]):
            x = norm(conv(x))
            if self.act is not None:
                x = self.act(x)
        return pred(x)

    def forward(self, feats: Sequence[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Class scores and box deltas of every level.

        Args:
            feats (Sequence[Tensor]): ``num_ins`` maps of shape (N, in_channels, H, W),
                finest first.

        Returns:
            tuple[list[Tensor], list[Tensor]]: Per level, class scores of shape
            (N, num_base_priors * cls_out_channels, H, W) and box deltas of shape
            (N, num_base_priors * 4, H, W), in the layout described in the class
            docstring.
        """
        if len(feats) != self.num_ins:
            raise ValueError(f'EfficientDetSepBNHead: got {len(feats)} feature levels, but '
                             f'num_ins is {self.num_ins}')
        cls_scores, bbox_preds = [], []
        for level, x in enumerate(feats):
            cls_scores.append(self._net(x, level, self.cls_convs, self.cls_norms, self.cls_pred))
            bbox_preds.append(self._net(x, level, self.reg_convs, self.reg_norms, self.reg_pred))
        return cls_scores, bbox_preds

    def _predict_by_feat_single(self,
                                cls_score_list: List[Tensor],
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Optional[Tensor]],
                                mlvl_priors: List[Tensor],
                                img_meta: dict,
                                cfg: ConfigDict,
                                rescale: bool = False,
                                with_nms: bool = True) -> InstanceData:
        cfg = self.test_cfg if cfg is None else cfg
        if not cfg.get('nms_pre_all_levels', False):
            return super()._predict_by_feat_single(cls_score_list, bbox_pred_list,
                                                   score_factor_list, mlvl_priors, img_meta,
                                                   cfg, rescale, with_nms)

        # One pseudo-level of shape (channels, sum of H*W, 1): mmdet's per-level
        # permute(1, 2, 0) then reads the locations of all levels in order, so its
        # top-k runs over every level at once.
        def merged(maps: List[Tensor]) -> List[Tensor]:
            return [torch.cat([m.flatten(1) for m in maps], dim=1)[..., None]]

        return super()._predict_by_feat_single(
            merged(cls_score_list), merged(bbox_pred_list), [None],
            [torch.cat(mlvl_priors)], img_meta, cfg, rescale, with_nms)
