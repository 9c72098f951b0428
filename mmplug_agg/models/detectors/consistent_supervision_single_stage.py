"""A one-stage detector with AugFPN's consistent supervision, as the official code.

In training the dense head (RetinaNet, FCOS or any mmdet dense head) computes
its loss as usual, and its own detections, detached, feed the auxiliary R-CNN
branch (:class:`LateralSupervisionRoIHead`) on the neck's lateral features.
Prediction is the plain detector's.
"""
from mmdet.models.detectors import SingleStageDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor

from mmplug_agg.models.layers import lateral_features
from mmplug_agg.registry import register_det_module


@register_det_module
class ConsistentSupervisionSingleStageDetector(SingleStageDetector):
    """:class:`SingleStageDetector` plus the official one-stage consistent supervision.

    Args:
        backbone (dict): The backbone.
        neck (dict): A neck that hands out its laterals in training
            (``type='AugFPN'``).
        bbox_head (dict): Any mmdet dense head (e.g. ``RetinaHead``, ``FCOSHead``).
        aux_head (dict): The auxiliary branch, a :class:`LateralSupervisionRoIHead`
            config; its ``train_cfg.proposal`` turns the dense head's detections
            into RoIs.
        train_cfg, test_cfg, data_preprocessor, init_cfg: As
            :class:`SingleStageDetector`.

    Example:
        >>> # configs/augfpn_retinanet_r50.py and configs/augfpn_fcos_r50.py
        >>> model = dict(type='ConsistentSupervisionSingleStageDetector',
        ...              neck=dict(type='AugFPN', ...), bbox_head=dict(type='RetinaHead', ...),
        ...              aux_head=dict(type='LateralSupervisionRoIHead', ...))  # doctest: +SKIP
    """

    def __init__(self,
                 backbone: ConfigType,
                 neck: ConfigType,
                 bbox_head: ConfigType,
                 aux_head: ConfigType,
                 train_cfg: OptConfigType = None,
                 test_cfg: OptConfigType = None,
                 data_preprocessor: OptConfigType = None,
                 init_cfg: OptMultiConfig = None) -> None:
        name = type(self).__name__
        if neck is None:
            raise ValueError(f"{name} needs a neck that hands out its laterals (type='AugFPN')")
        super().__init__(backbone=backbone, neck=neck, bbox_head=bbox_head, train_cfg=train_cfg,
                         test_cfg=test_cfg, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not getattr(self.neck, 'hands_out_laterals', False):
            raise ValueError(
                f'{name}: the neck {type(self.neck).__name__} hands out no lateral features; '
                "use neck=dict(type='AugFPN', ...) (with_rfa=False for an FPN without RFA)")
        self.aux_head = MODELS.build(aux_head)

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        x = self.extract_feat(batch_inputs)
        laterals = lateral_features(x, type(self).__name__)
        losses, detections = self.bbox_head.loss_and_predict(
            x, batch_data_samples, proposal_cfg=self.aux_head.proposal_cfg)
        losses.update(self.aux_head.loss(laterals, detections, batch_data_samples))
        return losses

