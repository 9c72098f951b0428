"""Segmentors whose predictions are refined by a fully connected CRF (DeepLab v1/v2).

``CRFEncoderDecoder`` and ``CRFCascadeEncoderDecoder`` are mmseg's segmentors with
one more argument, ``crf``: at prediction time (validation, test, inference) the
class scores of each image go through mean-field inference of a dense CRF whose
appearance kernel reads the input image, before mmseg's usual cropping, resizing
and argmax. As in DeepLab's Caffe ``DenseCRF`` layer, the CRF sees only the image
itself, not the padding the preprocessor added (the scores there are passed on
unchanged, and mmseg crops them). Training is unchanged, and the parameter names
are mmseg's, so a checkpoint of the plain segmentor loads as it is. Switching a
config over is one line; a preset selects the settings of a released DeepLab model
and explicit keys override it::

    model = dict(type='CRFEncoderDecoder', crf=dict(preset='deeplabv2_voc'))
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
        height, width = seg_logits.shape[-2:]
        if images.shape[-2:] != (height, width):
            images = F.interpolate(images, size=(height, width), mode='bilinear',
                                   align_corners=False)
        # The image area of each input: (left, right, top, bottom) of the
        # preprocessor's padding (mmseg's keys at test and at training time), at
        # the scores' size when they match the input.
        areas = []
        for meta in batch_img_metas:
            padding = meta.get('img_padding_size', meta.get('padding_size', None))
            left, right, top, bottom = padding or (0, 0, 0, 0)
            if tuple(inputs.shape[-2:]) != (height, width):
                left = right = top = bottom = 0
            areas.append((top, height - bottom, left, width - right))
        out = seg_logits.float().log_softmax(1)
        groups = {}
        for index, area in enumerate(areas):
            groups.setdefault(area, []).append(index)
        for (y0, y1, x0, x1), indices in groups.items():
            # Images of one padded size go through the CRF together.
            pick = torch.tensor(indices, device=seg_logits.device)
            marginals = self.crf(seg_logits.index_select(0, pick)[..., y0:y1, x0:x1].float(),
                                 images.index_select(0, pick)[..., y0:y1, x0:x1].float())
            out[pick, :, y0:y1, x0:x1] = marginals.clamp_min(
                torch.finfo(marginals.dtype).tiny).log()
        return out.to(seg_logits.dtype)


@register_seg_module
class CRFEncoderDecoder(DenseCRFMixin, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` with dense-CRF post-processing.

    Args:
        crf (dict, optional): Arguments of :class:`DenseCRF`: ``preset``
            (``'deeplabv1_voc'``, ``'deeplabv2_voc'``), ``num_iterations``,
            ``appearance_weight``, ``appearance_xy_std``, ``appearance_rgb_std``,
            ``smoothness_weight``, ``smoothness_xy_std``, ``normalization``
            (``'row'``, DeepLab's, by default), ``method``; explicit keys override
            the preset. None turns the CRF off.
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
