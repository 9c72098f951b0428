"""EncoderDecoder whose loss includes its shape-adaptor backbone's memory-limit penalty."""
from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from mmplug_agg.models.backbones.shape_adaptor import add_shape_limit_loss
from mmplug_agg.registry import register_seg_module


@register_seg_module
class ShapeAdaptorEncoderDecoder(EncoderDecoder):
    """mmseg's ``EncoderDecoder`` plus ``loss_shape_limit`` from a shape-adaptor backbone.

    Takes exactly ``EncoderDecoder``'s arguments. When the backbone
    (:class:`ShapeAdaptorResNet` or :class:`ShapeAdaptorDLA`) sets ``limit_dim``,
    its ``penalty()`` joins the losses; otherwise the losses are the segmentor's.
    """

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        losses = super().loss(inputs, data_samples)
        return add_shape_limit_loss(losses, self.backbone)
