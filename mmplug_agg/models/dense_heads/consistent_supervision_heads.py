"""Dense-head variants of AugFPN's consistent supervision (not the official design).

The official one-stage form is R-CNN-like: the dense head's detections become
RoIs pooled from the laterals and classified by a shared 2-fc box head
(``detectors/consistent_supervision_single_stage.py``). The heads here are
alternatives kept as options: a second dense head of the same type runs on the
neck's lateral features (RetinaNet: M3-M5; RPN: M2-M5) with anchors at the
laterals' strides, and ``aux_loss_weight`` times its loss joins the head's own.
Its convolutions are shared by the lateral levels. Training only: ``predict`` is
the plain head's.

Since a dense loss is normalised by the positives of all levels together, the
auxiliary term here is ``lambda * L(M_levels)``, not a sum of per-level losses.
"""
import copy
import warnings

from mmdet.models.dense_heads import RetinaHead, RPNHead
from mmdet.structures import SampleList

from mmplug_agg.models.layers import lateral_features
from mmplug_agg.registry import register_det_module


class _LateralSupervision:
    """Builds the auxiliary head and adds its loss on the laterals."""

    def _build_aux_head(self, head_type: type, args: tuple, kwargs: dict, num_lateral_levels: int,
                        aux_loss_weight: float) -> None:
        name = type(self).__name__
        if aux_loss_weight < 0:
            raise ValueError(f'{name}: aux_loss_weight must be >= 0, got {aux_loss_weight}')
        anchor_generator = kwargs.get('anchor_generator')
        if not anchor_generator or 'strides' not in anchor_generator:
            raise ValueError(f'{name} needs anchor_generator with strides in its config')
        strides = list(anchor_generator['strides'])
        if not 0 < num_lateral_levels <= len(strides):
            raise ValueError(f'{name}: num_lateral_levels must be in [1, {len(strides)}], '
                             f'got {num_lateral_levels}')
        aux_kwargs = copy.deepcopy(kwargs)
        aux_kwargs['anchor_generator'] = dict(anchor_generator,
                                              strides=strides[:num_lateral_levels])
        self.aux_head = head_type(*args, **aux_kwargs)
        self.aux_loss_weight = aux_loss_weight

    def _aux_loss(self, x: tuple, batch_data_samples: SampleList) -> dict:
        laterals = lateral_features(x, type(self).__name__)
        expected = self.aux_head.prior_generator.num_levels
        if len(laterals) != expected:
            raise ValueError(f'{type(self).__name__}: the neck hands out {len(laterals)} '
                             f'laterals, but num_lateral_levels is {expected}')
        losses = self.aux_head.loss(laterals, batch_data_samples)
        return {f'aux_{name}': _scale(value, self.aux_loss_weight)
                for name, value in losses.items()}


def _scale(value, weight: float):
    return [v * weight for v in value] if isinstance(value, (list, tuple)) else value * weight


@register_det_module
class DenseConsistentSupervisionRetinaHead(_LateralSupervision, RetinaHead):
    """:class:`RetinaHead` plus a dense auxiliary RetinaHead loss on the laterals M3-M5.

    A variant of AugFPN's one-stage consistent supervision: the official code
    supervises the laterals through an R-CNN box head on the head's own
    detections instead (:class:`ConsistentSupervisionSingleStageDetector`).

    Args:
        aux_loss_weight (float): lambda. Defaults to 0.25.
        num_lateral_levels (int): Laterals the neck hands out; they take the
            first strides of ``anchor_generator``. Defaults to 3 (M3-M5 for
            RetinaNet's ``start_level=1``).
        *args, **kwargs: :class:`RetinaHead`'s arguments.
    """

    def __init__(self, *args, aux_loss_weight: float = 0.25, num_lateral_levels: int = 3,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_aux_head(RetinaHead, args, kwargs, num_lateral_levels, aux_loss_weight)

    def loss(self, x: tuple, batch_data_samples: SampleList) -> dict:
        losses = super().loss(x, batch_data_samples)
        losses.update(self._aux_loss(x, batch_data_samples))
        return losses


@register_det_module
class ConsistentSupervisionRPNHead(_LateralSupervision, RPNHead):
    """:class:`RPNHead` plus an auxiliary RPN loss on the laterals M2-M5.

    An extension of AugFPN (the paper supervises the laterals through the
    R-CNN head only); off unless a config selects this head.

    Args:
        aux_loss_weight (float): lambda. Defaults to 0.25.
        num_lateral_levels (int): Laterals the neck hands out. Defaults to 4.
        *args, **kwargs: :class:`RPNHead`'s arguments.
    """

    def __init__(self, *args, aux_loss_weight: float = 0.25, num_lateral_levels: int = 4,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._build_aux_head(RPNHead, args, kwargs, num_lateral_levels, aux_loss_weight)

    def loss_and_predict(self, x: tuple, batch_data_samples: SampleList,
                         proposal_cfg=None) -> tuple:
        losses, predictions = super().loss_and_predict(x, batch_data_samples, proposal_cfg)
        losses.update(self._aux_loss(x, batch_data_samples))
        return losses, predictions

    def loss(self, x: tuple, batch_data_samples: SampleList) -> dict:
        losses = super().loss(x, batch_data_samples)
        losses.update(self._aux_loss(x, batch_data_samples))
        return losses


@register_det_module
class ConsistentSupervisionRetinaHead(DenseConsistentSupervisionRetinaHead):
    """Deprecated name of :class:`DenseConsistentSupervisionRetinaHead`.

    It was wrongly documented as the official design; it warns and builds the
    dense variant. The official one-stage form is
    ``type='ConsistentSupervisionSingleStageDetector'`` (configs/augfpn_retinanet_r50.py).
    """

    def __init__(self, *args, **kwargs) -> None:
        warnings.warn(
            'ConsistentSupervisionRetinaHead is renamed DenseConsistentSupervisionRetinaHead '
            "(a variant); AugFPN's official one-stage consistent supervision is "
            "model.type='ConsistentSupervisionSingleStageDetector'", DeprecationWarning)
        super().__init__(*args, **kwargs)
