"""Segmentors whose predictions are refined by a fully connected CRF (DeepLab v1/v2).

``CRFEncoderDecoder`` and ``CRFCascadeEncoderDecoder`` are mmseg's segmentors with
one more argument, ``crf``: at prediction time (validation, test, inference) the
class scores of the whole image go through mean-field inference of a dense CRF
whose appearance kernel reads the input image, before mmseg's usual cropping,
resizing and argmax. Training is unchanged, and the parameter names are mmseg's, so
a checkpoint of the plain segmentor loads as it is. Switching a config over is one
line::

    model = dict(type='CRFEncoderDecoder', crf=dict(num_iterations=10))
"""
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmseg.models.segmentors import CascadeEncoderDecoder, EncoderDecoder
from torch import Tensor

from mmplug_agg.models.layers.dense_crf import DenseCRF
from mmplug_agg.registry import register_seg_module


class DenseCRFMixin:
    """Adds ``crf`` to an mmseg segmentor: its ``inference`` returns CRF-refined scores.

    The returned scores are the log of the CRF marginals, so mmseg's softmax and
    argmax downstream read the marginals.
    """

    def _build_crf(self, crf: Optional[dict]) -> None:
        self.crf = None if crf is None else DenseCRF(**crf)

    def images_from_inputs(self, inputs: Tensor) -> Tensor:
        """The preprocessed batch back in 0-255 colours (the preprocessor's mean and std).

        Channel order does not matter: the CRF's colour distance is the same for
        RGB and BGR.
        """
        preprocessor = self.data_preprocessor
        if getattr(preprocessor, '_enable_normalize', False):
            inputs = inputs * preprocessor.std + preprocessor.mean
        return inputs

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        seg_logits = super().inference(inputs, batch_img_metas)
        if self.crf is None:
            return seg_logits
        images = self.images_from_inputs(inputs)
        if images.shape[-2:] != seg_logits.shape[-2:]:
            images = F.interpolate(images, size=seg_logits.shape[-2:], mode='bilinear',
                                   align_corners=False)
        marginals = self.crf(seg_logits.float(), images.float())
        return marginals.clamp_min(torch.finfo(marginals.dtype).tiny).log().to(seg_logits.dtype)


@register_seg_module
class CRFEncoderDecoder(DenseCRFMixin, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` with dense-CRF post-processing.

    Args:
        crf (dict, optional): Arguments of :class:`DenseCRF` (``num_iterations``,
            ``appearance_weight``, ``appearance_xy_std``, ``appearance_rgb_std``,
            ``smoothness_weight``, ``smoothness_xy_std``, ``method``). None turns
            the CRF off.
        **kwargs: Arguments of ``EncoderDecoder``.
    """

    def __init__(self, *args, crf: Optional[dict] = dict(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_crf(crf)


@register_seg_module
class CRFCascadeEncoderDecoder(DenseCRFMixin, CascadeEncoderDecoder):
    """mmseg's ``CascadeEncoderDecoder`` with dense-CRF post-processing (see
    :class:`CRFEncoderDecoder`)."""

    def __init__(self, *args, crf: Optional[dict] = dict(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_crf(crf)
