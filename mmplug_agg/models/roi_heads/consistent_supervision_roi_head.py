"""AugFPN's consistent supervision for two-stage detectors (Guo et al., CVPR 2020).

Before the top-down fusion, the lateral features M2-M5 of an FPN carry very
different semantics; consistent supervision makes them alike by asking each of
them to solve the detection task. Every sampled RoI is pooled from every
lateral level, an auxiliary head whose parameters are shared across the levels
classifies and regresses it (and segments it, for Mask R-CNN), and the loss

    L = lambda * sum_levels (L_cls,M + L_loc,M [+ L_mask,M]) + L_cls,P + L_loc,P [+ L_mask,P]

trains the network. The auxiliary branch runs in training only: prediction is
that of :class:`StandardRoIHead`.
"""
import copy
from typing import List, Optional

import torch
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import InstanceList
from torch import Tensor

from mmplug_agg.models.layers import lateral_features
from mmplug_agg.registry import register_det_module

from .lateral_supervision_head import (level_shared_bbox_loss, repeat_rows,
                                       scale_level_losses)


@register_det_module
class ConsistentSupervisionRoIHead(StandardRoIHead):
    """:class:`StandardRoIHead` plus AugFPN's auxiliary losses on the laterals.

    Needs a neck that hands out its lateral features in training
    (:class:`AugFPN`). Takes every argument of :class:`StandardRoIHead`, and:

    Args:
        aux_loss_weight (float): lambda, the weight of each level's auxiliary
            loss. Defaults to 0.25, as the official code.
        share_aux_head (bool): Use the main bbox (and mask) head as the
            auxiliary head. Defaults to False: one separate auxiliary head,
            shared across levels, as the official code.
        aux_roi_extractor (dict, optional): Extractor that pools every RoI from
            every lateral level. Defaults to an ``AllLevelRoIExtractor`` with
            the bbox RoI extractor's RoI layer, channels and strides.
        aux_mask_roi_extractor (dict, optional): The same for the mask branch;
            defaults from the mask RoI extractor.
        aux_bbox_head (dict, optional): The auxiliary bbox head when not
            shared; defaults to a copy of ``bbox_head``'s config.
        aux_mask_head (dict, optional): The auxiliary mask head when not
            shared; defaults to a copy of ``mask_head``'s config.
    """

    def __init__(self,
                 *,
                 aux_loss_weight: float = 0.25,
                 share_aux_head: bool = False,
                 aux_roi_extractor: Optional[dict] = None,
                 aux_mask_roi_extractor: Optional[dict] = None,
                 aux_bbox_head: Optional[dict] = None,
                 aux_mask_head: Optional[dict] = None,
                 bbox_roi_extractor: Optional[dict] = None,
                 bbox_head: Optional[dict] = None,
                 mask_roi_extractor: Optional[dict] = None,
                 mask_head: Optional[dict] = None,
                 **kwargs) -> None:
        if bbox_head is None:
            raise ValueError('ConsistentSupervisionRoIHead needs a bbox_head')
        if aux_loss_weight < 0:
            raise ValueError(f'aux_loss_weight must be >= 0, got {aux_loss_weight}')
        super().__init__(
            bbox_roi_extractor=bbox_roi_extractor,
            bbox_head=bbox_head,
            mask_roi_extractor=mask_roi_extractor,
            mask_head=mask_head,
            **kwargs)
        self.aux_loss_weight = aux_loss_weight
        self.share_aux_head = share_aux_head
        self.aux_roi_extractor = MODELS.build(
            aux_roi_extractor or _all_level_extractor(bbox_roi_extractor))
        self.aux_bbox_head = None if share_aux_head else MODELS.build(
            aux_bbox_head or copy.deepcopy(bbox_head))
        if self.with_mask:
            self.aux_mask_roi_extractor = MODELS.build(
                aux_mask_roi_extractor
                or _all_level_extractor(mask_roi_extractor or bbox_roi_extractor))
            self.aux_mask_head = None if share_aux_head else MODELS.build(
                aux_mask_head or copy.deepcopy(mask_head))

    def bbox_loss(self, x: tuple, sampling_results: List[SamplingResult]) -> dict:
        bbox_results = super().bbox_loss(x, sampling_results)
        laterals = lateral_features(x, type(self).__name__)
        head = self.bbox_head if self.share_aux_head else self.aux_bbox_head
        bbox_results['loss_bbox'].update(level_shared_bbox_loss(
            self.aux_roi_extractor, head, laterals, sampling_results, self.train_cfg,
            self.aux_loss_weight))
        return bbox_results

    def mask_loss(self, x: tuple, sampling_results: List[SamplingResult], bbox_feats: Tensor,
                  batch_gt_instances: InstanceList) -> dict:
        mask_results = super().mask_loss(x, sampling_results, bbox_feats, batch_gt_instances)
        laterals = lateral_features(x, type(self).__name__)
        head = self.mask_head if self.share_aux_head else self.aux_mask_head
        extractor = self.aux_mask_roi_extractor

        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        pooled = extractor(laterals[:extractor.num_inputs], pos_rois)
        num_levels = pooled.size(1)
        mask_preds = head(pooled.transpose(0, 1).flatten(0, 1))
        if mask_preds.size(0) == 0:
            loss_mask = mask_preds.sum()
        else:
            labels = torch.cat([res.pos_gt_labels for res in sampling_results])
            if head.class_agnostic:
                labels = torch.zeros_like(labels)
            # the main head's loss_and_target does not return its targets: recompute
            mask_targets = head.get_targets(sampling_results, batch_gt_instances, self.train_cfg)
            loss_mask = head.loss_mask(mask_preds, repeat_rows(mask_targets, num_levels),
                                       repeat_rows(labels, num_levels))
        mask_results['loss_mask'].update(
            scale_level_losses(dict(loss_mask=loss_mask), self.aux_loss_weight, num_levels))
        return mask_results


def _all_level_extractor(extractor_cfg: dict) -> dict:
    cfg = dict(
        type='AllLevelRoIExtractor',
        roi_layer=copy.deepcopy(extractor_cfg['roi_layer']),
        out_channels=extractor_cfg['out_channels'],
        featmap_strides=list(extractor_cfg['featmap_strides']))
    if 'pooling_impl' in extractor_cfg:
        cfg['pooling_impl'] = extractor_cfg['pooling_impl']
    return cfg
