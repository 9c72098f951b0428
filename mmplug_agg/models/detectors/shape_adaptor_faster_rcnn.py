"""Faster R-CNN that trains a shape-adaptor backbone on the official alternating schedule."""
from mmdet.models.detectors import FasterRCNN
from torch import Tensor

from mmplug_agg.engine.shape_adaptor import ShapeAdaptorTrainStepMixin
from mmplug_agg.models.backbones.shape_adaptor import add_shape_limit_loss
from mmplug_agg.registry import register_det_module


@register_det_module
class ShapeAdaptorFasterRCNN(ShapeAdaptorTrainStepMixin, FasterRCNN):
    """mmdet's ``FasterRCNN`` for a shape-adaptor backbone.

    Takes exactly ``FasterRCNN``'s arguments. ``train_step`` runs the
    official alternating schedule (an alpha pass every ``alpha_step``
    iterations, then the weights' pass) when the optimiser wrapper is a
    ``ShapeAdaptorOptimWrapperDict`` (``ShapeAdaptorOptimWrapperConstructor``
    with ``alpha_schedule='alternate'``), and Faster R-CNN's own step
    otherwise. With the soft memory limit (``limit_type='loss'``) the
    backbone's ``penalty()`` joins the losses as ``loss_shape_limit``.
    """

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        losses = super().loss(batch_inputs, batch_data_samples)
        return add_shape_limit_loss(losses, self.backbone)
