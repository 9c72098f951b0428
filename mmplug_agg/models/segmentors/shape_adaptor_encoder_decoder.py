"""EncoderDecoder that trains a shape-adaptor backbone on the official alternating schedule."""
from mmseg.models.segmentors import EncoderDecoder
from torch import Tensor

from mmplug_agg.engine.shape_adaptor import ShapeAdaptorTrainStepMixin
from mmplug_agg.models.backbones.shape_adaptor import add_shape_limit_loss
from mmplug_agg.registry import register_seg_module


@register_seg_module
class ShapeAdaptorEncoderDecoder(ShapeAdaptorTrainStepMixin, EncoderDecoder):
    """mmseg's ``EncoderDecoder`` for a shape-adaptor backbone.

    Takes exactly ``EncoderDecoder``'s arguments. ``train_step`` runs the
    official alternating schedule when the optimiser wrapper is a
    ``ShapeAdaptorOptimWrapperDict`` and the segmentor's own step otherwise;
    with ``limit_type='loss'`` the backbone's ``penalty()`` joins the losses
    as ``loss_shape_limit``.
    """

    def loss(self, inputs: Tensor, data_samples: list) -> dict:
        losses = super().loss(inputs, data_samples)
        return add_shape_limit_loss(losses, self.backbone)
