"""Faster R-CNN whose loss includes its shape-adaptor backbone's memory-limit penalty."""
from mmdet.models.detectors import FasterRCNN
from torch import Tensor

from mmplug_agg.models.backbones.shape_adaptor import add_shape_limit_loss
from mmplug_agg.registry import register_det_module


@register_det_module
class ShapeAdaptorFasterRCNN(FasterRCNN):
    """mmdet's ``FasterRCNN`` plus ``loss_shape_limit`` from a shape-adaptor backbone.

    Takes exactly ``FasterRCNN``'s arguments. When the backbone
    (:class:`ShapeAdaptorResNet` or :class:`ShapeAdaptorDLA`) sets ``limit_dim``,
    its ``penalty()`` joins the losses, so the optimiser sees the memory limit
    next to the detection losses; otherwise the losses are Faster R-CNN's.
    """

    def loss(self, batch_inputs: Tensor, batch_data_samples: list) -> dict:
        losses = super().loss(batch_inputs, batch_data_samples)
        return add_shape_limit_loss(losses, self.backbone)
