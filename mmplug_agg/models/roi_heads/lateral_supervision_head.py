"""AugFPN's consistent supervision for one-stage detectors, as the official code.

The official RetinaNet and FCOS recipes (``single_stage.py`` of Gus-Guo/AugFPN)
give a one-stage detector the R-CNN form of consistent supervision: the dense
head's own detections (detached) become RoIs, which are assigned and sampled as
for an R-CNN, pooled from every lateral feature (M3-M5), and classified and
regressed by one small box head shared across the levels. Each level adds
``loss_weight * (L_cls + L_loc)``. The branch runs in training only.
"""
import copy
from typing import List, Optional, Sequence

from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import InstanceList
from mmengine.config import ConfigDict
from torch import Tensor, nn

from mmplug_agg.registry import register_det_module

from .soft_roi_extractor import AllLevelRoIExtractor

REQUIRED_TRAIN_CFG = ('proposal', 'assigner', 'sampler')


def repeat_rows(tensor: Tensor, times: int) -> Tensor:
    return tensor.repeat(times, *([1] * (tensor.dim() - 1)))


def scale_level_losses(losses: dict, loss_weight: float, num_levels: int) -> dict:
    """Rename to ``aux_*`` and weigh: a loss averaged over the RoIs of all levels, times
    the number of levels, equals the sum of the per-level losses (each one weighted)."""
    return {
        f'aux_{name}': value * (loss_weight * num_levels) if 'loss' in name else value
        for name, value in losses.items()
    }


def level_shared_bbox_loss(extractor: nn.Module, head: nn.Module, feats: Sequence[Tensor],
                           sampling_results: List[SamplingResult], train_cfg: ConfigDict,
                           loss_weight: float) -> dict:
    """Consistent supervision's box loss: every RoI pooled from every level of ``feats``,
    one pass of the head shared across levels, ``loss_weight`` times each level's loss."""
    rois = bbox2roi([res.priors for res in sampling_results])
    # (num_rois, levels, C, h, w) -> level-major batch: one pass of the shared head
    pooled = extractor(feats[:extractor.num_inputs], rois)
    num_levels = pooled.size(1)
    cls_score, bbox_pred = head(pooled.transpose(0, 1).flatten(0, 1))
    targets = head.get_targets(sampling_results, train_cfg)
    losses = head.loss(cls_score, bbox_pred, repeat_rows(rois, num_levels),
                       *(repeat_rows(t, num_levels) for t in targets))
    return scale_level_losses(losses, loss_weight, num_levels)


@register_det_module
class LateralSupervisionRoIHead(StandardRoIHead):
    """An R-CNN box head trained on RoIs pooled from every lateral level.

    The auxiliary branch of :class:`ConsistentSupervisionSingleStageDetector`.
    ``loss`` takes the laterals, the RoIs (the dense head's detections) and the
    batch; there is no ``predict``: the branch adds nothing at inference.

    Args:
        bbox_roi_extractor (dict): Pools every RoI from every lateral, e.g.
            ``AllLevelRoIExtractor`` with RoIAlign 7x7, sampling 2, strides
            ``[8, 16, 32]`` (M3-M5).
        bbox_head (dict): The box head shared across levels (the official code:
            two shared fc layers of 1024, class-specific regression, target stds
            0.1/0.1/0.2/0.2, cross entropy and smooth L1).
        train_cfg (dict): ``proposal`` (how the dense head's detections become RoIs:
            ``nms_pre``, ``score_thr``, ``nms``, ``max_per_img``), ``assigner``,
            ``sampler`` and ``pos_weight``, as an R-CNN's train_cfg.
        loss_weight (float): Weight of each level's loss. Defaults to 0.25.
        init_cfg (dict or list[dict], optional): Initialisation config.

    Example:
        >>> head = LateralSupervisionRoIHead(
        ...     bbox_roi_extractor=dict(
        ...         type='AllLevelRoIExtractor', out_channels=256, featmap_strides=[8, 16, 32],
        ...         roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2)),
        ...     bbox_head=dict(type='Shared2FCBBoxHead', in_channels=256, num_classes=80),
        ...     train_cfg=dict(
        ...         proposal=dict(nms_pre=2000, score_thr=0.01, max_per_img=1000,
        ...                       nms=dict(type='nms', iou_threshold=0.7)),
        ...         assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5,
        ...                       min_pos_iou=0.5),
        ...         sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25,
        ...                      add_gt_as_proposals=True)))
    """

    def __init__(self,
                 bbox_roi_extractor: dict,
                 bbox_head: dict,
                 train_cfg: dict,
                 loss_weight: float = 0.25,
                 init_cfg: Optional[dict] = None) -> None:
        name = type(self).__name__
        missing = [key for key in REQUIRED_TRAIN_CFG if key not in (train_cfg or {})]
        if missing:
            raise ValueError(
                f'{name}: train_cfg lacks {missing}; set aux_head.train_cfg.proposal (how the '
                "dense head's detections become RoIs), .assigner (e.g. MaxIoUAssigner) and "
                '.sampler (e.g. RandomSampler), as the AugFPN one-stage configs do')
        if loss_weight < 0:
            raise ValueError(f'{name}: loss_weight must be >= 0, got {loss_weight}')
        super().__init__(bbox_roi_extractor=bbox_roi_extractor, bbox_head=bbox_head,
                         train_cfg=ConfigDict(copy.deepcopy(train_cfg)), init_cfg=init_cfg)
        if not isinstance(self.bbox_roi_extractor, AllLevelRoIExtractor):
            raise ValueError(f"{name}: bbox_roi_extractor must pool every level "
                             f"(type='AllLevelRoIExtractor'), got "
                             f'{type(self.bbox_roi_extractor).__name__}')
        self.loss_weight = loss_weight

    @property
    def num_levels(self) -> int:
        return self.bbox_roi_extractor.num_inputs

    @property
    def proposal_cfg(self) -> ConfigDict:
        return self.train_cfg.proposal

    def check_laterals(self, laterals: Sequence[Tensor]) -> None:
        if len(laterals) < self.num_levels:
            raise ValueError(
                f'{type(self).__name__}: the neck hands out {len(laterals)} laterals, but '
                f'bbox_roi_extractor.featmap_strides names {self.num_levels} levels')

    def loss(self, laterals: Sequence[Tensor], rpn_results_list: InstanceList,
             batch_data_samples: SampleList) -> dict:
        self.check_laterals(laterals)
        return super().loss(tuple(laterals), rpn_results_list,
                            batch_data_samples)

    def bbox_loss(self, x: tuple, sampling_results: List[SamplingResult]) -> dict:
        return dict(loss_bbox=level_shared_bbox_loss(
            self.bbox_roi_extractor, self.bbox_head, x, sampling_results, self.train_cfg,
            self.loss_weight))

    def predict(self, *args, **kwargs):
        raise RuntimeError(f'{type(self).__name__} is a training-only branch; the detector '
                           'predicts with its dense head')
