"""DeepLab v2's multi-scale inputs with max fusion (MSC; Chen et al., TPAMI 2017,
after Chen et al., "Attention to Scale", CVPR 2016).

The same network (shared weights) classifies the image at several scales (1, 0.75
and 0.5 in DeepLab v2); each scale's class scores are resized bilinearly to the
scores of the largest scale and fused by taking, per position and class, the
maximum over the scales. In training, the fused scores and every scale's scores
are supervised, each by its own cross-entropy with weight 1 (the released
ResNet-101 prototxt: ``loss``, ``loss_res1``, ``loss_res075``, ``loss_res05``).
At test time the fused scores are the prediction.
"""
import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import EncoderDecoder
from mmseg.models.utils import resize
from mmseg.utils import SampleList, add_prefix
from torch import Tensor

from mmplug_agg.registry import register_seg_module

from .dense_crf_segmentors import DenseCRFMixin


@register_seg_module
class MSCEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` run on several input scales, fused by max (MSC).

    Args:
        scales (Sequence[float]): Input scales; the output is fused at the size
            of the largest one's scores. Defaults to ``(1.0, 0.75, 0.5)``
            (DeepLab v2). A scaled input is ``ceil(s * H) x ceil(s * W)``,
            resized bilinearly (``align_corners`` of the decode head).
        scale_losses (bool): Also supervise each scale's own scores (DeepLab
            v2 does); the fused scores are always supervised. Defaults to True.
        **kwargs: Arguments of ``EncoderDecoder``. An auxiliary head, if any,
            reads the features of the largest scale.

    Loss keys: ``decode.*`` for the fused scores, ``decode_scale{100 s}.*``
    (e.g. ``decode_scale75.loss_ce``) for each scale.

    Example:
        >>> model = dict(type='MSCEncoderDecoder', scales=(1.0, 0.75, 0.5),
        ...              backbone=..., decode_head=dict(type='DeepLabV2Head', ...))
    """

    def __init__(self,
                 *args,
                 scales: Sequence[float] = (1.0, 0.75, 0.5),
                 scale_losses: bool = True,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        scales = tuple(scales)
        if (not scales or len(set(scales)) != len(scales)
                or any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0
                       for s in scales)):
            raise ValueError(f'scales must be distinct positive numbers, got {scales}')
        self.scales = tuple(float(s) for s in scales)
        self.scale_losses = scale_losses
        self._largest = max(range(len(self.scales)), key=lambda i: self.scales[i])

    def _scaled(self, inputs: Tensor, scale: float) -> Tensor:
        if scale == 1.0:
            return inputs
        height, width = inputs.shape[-2:]
        size = (math.ceil(height * scale), math.ceil(width * scale))
        return F.interpolate(inputs, size=size, mode='bilinear',
                             align_corners=self.align_corners)

    def multi_scale_forward(self, inputs: Tensor) -> Tuple[List[Tensor], Tensor, List[Tensor]]:
        """Scores of every scale (each at its own size), their max fusion (at the
        largest scale's size), and the largest scale's features."""
        scores, largest_feats = [], None
        for index, scale in enumerate(self.scales):
            feats = self.extract_feat(self._scaled(inputs, scale))
            scores.append(self.decode_head.forward(feats))
            if index == self._largest:
                largest_feats = feats
        size = scores[self._largest].shape[-2:]
        fused = torch.stack([
            s if s.shape[-2:] == size else resize(
                s, size=size, mode='bilinear', align_corners=self.align_corners)
            for s in scores
        ]).amax(0)
        return scores, fused, largest_feats

    def loss(self, inputs: Tensor, data_samples: SampleList) -> dict:
        scores, fused, feats = self.multi_scale_forward(inputs)
        losses = add_prefix(self.decode_head.loss_by_feat(fused, data_samples), 'decode')
        if self.scale_losses:
            for scale, score in zip(self.scales, scores):
                losses.update(add_prefix(self.decode_head.loss_by_feat(score, data_samples),
                                         f'decode_scale{round(100 * scale)}'))
        if self.with_auxiliary_head:
            losses.update(self._auxiliary_head_forward_train(feats, data_samples))
        return losses

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        return self.decode_head.predict_by_feat(self.multi_scale_forward(inputs)[1],
                                                batch_img_metas)

    def _forward(self, inputs: Tensor, data_samples: Optional[SampleList] = None) -> Tensor:
        return self.multi_scale_forward(inputs)[1]


@register_seg_module
class CRFMSCEncoderDecoder(DenseCRFMixin, MSCEncoderDecoder):
    """:class:`MSCEncoderDecoder` whose fused predictions go through the dense CRF
    (DeepLab v2's full test path; see :class:`CRFEncoderDecoder` for ``crf``)."""

    def __init__(self, *args, crf: Optional[dict] = dict(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_crf(crf)
