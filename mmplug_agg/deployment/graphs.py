"""The tensor-only graphs that are exported from an mmdet detector or mmseg segmentor.

An exported graph starts at the network input: the image after the data
preprocessor (colour order, mean/std normalisation and padding happen before it,
as in mmdeploy). It ends where the toolbox's post-processing starts, so that every
operator in between has a standard ONNX form:

* :class:`SegmentorGraph`: image -> class logits at the image's size (mmseg's
  ``encode_decode``: what ``predict`` arg-maxes). A dense CRF
  (``CRFEncoderDecoder``) is post-processing and is not part of the graph.
* :class:`DenseDetectorGraph`: image -> the raw outputs of the dense head (the
  RPN head for two-stage detectors), level by level, in the order of the head's
  ``predict_by_feat`` arguments; for two-stage detectors also the pyramid
  features that the RoI stage pools from.
* :class:`RoIStageGraph`: pyramid features + RoIs ``(N, 5)`` (batch index,
  x1, y1, x2, y2 in input pixels) -> the RoI head's class scores and box deltas
  (and mask logits for Mask R-CNN); for Cascade R-CNN every stage runs, each on
  the boxes the previous stage regressed, as mmdet's ``predict`` does.
"""
import inspect
from typing import List, Sequence, Tuple

import torch
from torch import Tensor, nn


def is_two_stage(model: nn.Module) -> bool:
    return getattr(model, 'with_rpn', False) and getattr(model, 'with_roi_head', False)


def is_segmentor(model: nn.Module) -> bool:
    return hasattr(model, 'decode_head')


class SegmentorGraph(nn.Module):
    """image (N, 3, H, W) -> logits (N, num_classes, H, W)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def output_names(self) -> List[str]:
        return ['seg_logits']

    def forward(self, image: Tensor) -> Tensor:
        # A torch.Size img_shape makes mmseg resize to it (its slide-inference branch).
        metas = [dict(img_shape=image.shape[-2:])]
        return self.model.encode_decode(image, metas)


def _head_output_names(head: nn.Module, num_groups: int) -> List[str]:
    """The names of ``predict_by_feat``'s first arguments (cls_scores, bbox_preds, ...)."""
    names = [name for name in inspect.signature(head.predict_by_feat).parameters
             if name != 'self'][:num_groups]
    if len(names) < num_groups:
        names += [f'output{k}' for k in range(len(names), num_groups)]
    return names


class DenseDetectorGraph(nn.Module):
    """image -> dense head outputs per level (+ the pyramid for two-stage detectors)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.two_stage = is_two_stage(model)
        self.head = model.rpn_head if self.two_stage else model.bbox_head
        self._names: List[str] = []

    @property
    def output_names(self) -> List[str]:
        if not self._names:
            raise RuntimeError('output names are known after the first forward')
        return self._names

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        feats = self.model.extract_feat(image)
        groups = self.head(feats)
        group_names = _head_output_names(self.head, len(groups))
        outputs, names = [], []
        for group_name, group in zip(group_names, groups):
            for level, tensor in enumerate(group):
                outputs.append(tensor)
                names.append(f'{group_name}_{level}')
        if self.two_stage:
            outputs += list(feats)
            names += [f'feat_{level}' for level in range(len(feats))]
        self._names = names
        return tuple(outputs)


def roi_feature_count(roi_head: nn.Module) -> int:
    extractors = roi_head.bbox_roi_extractor
    if not isinstance(extractors, (list, nn.ModuleList)):
        extractors = [extractors]
    if getattr(roi_head, 'with_mask', False) and not getattr(roi_head, 'share_roi_extractor',
                                                             False):
        masks = roi_head.mask_roi_extractor
        extractors = list(extractors) + list(masks if isinstance(masks, nn.ModuleList)
                                             else [masks])
    return max(extractor.num_inputs for extractor in extractors)


class RoIStageGraph(nn.Module):
    """feats + rois (+ image_shape for cascades) -> class scores, box deltas, masks.

    Outputs: ``cls_score`` (N, num_classes + 1) logits, ``bbox_pred`` box deltas
    relative to the RoIs (N, 4 or 4 * num_classes) and, with a mask head,
    ``mask_pred`` (N, num_classes, 28, 28) logits. For a cascade, ``cls_score`` is
    the mean of the stages' logits and ``bbox_pred`` the last stage's deltas,
    relative to ``stage_rois``, the RoIs the last stage pooled (mmdet's predict).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from mmdet.models.roi_heads import CascadeRoIHead
        self.model = model
        self.roi_head = model.roi_head
        self.cascade = isinstance(self.roi_head, CascadeRoIHead)
        self.num_feats = roi_feature_count(self.roi_head)
        self.with_mask = bool(getattr(self.roi_head, 'with_mask', False))
        if self.cascade and self.with_mask:
            raise ValueError('the RoI stage of a cascade with a mask head does not export yet')

    @property
    def input_names(self) -> List[str]:
        names = [f'feat_{level}' for level in range(self.num_feats)] + ['rois']
        return names + (['image_shape'] if self.cascade else [])

    @property
    def output_names(self) -> List[str]:
        if self.cascade:
            return ['cls_score', 'bbox_pred', 'stage_rois']
        return ['cls_score', 'bbox_pred'] + (['mask_pred'] if self.with_mask else [])

    def forward(self, *inputs: Tensor) -> Tuple[Tensor, ...]:
        feats = tuple(inputs[:self.num_feats])
        rois = inputs[self.num_feats]
        if self.cascade:
            return self._cascade(feats, rois, inputs[self.num_feats + 1])
        results = self.roi_head._bbox_forward(feats, rois)
        outputs = (results['cls_score'], results['bbox_pred'])
        if self.with_mask:
            outputs += (self.roi_head._mask_forward(feats, rois)['mask_preds'], )
        return outputs

    def _cascade(self, feats: Sequence[Tensor], rois: Tensor,
                 image_shape: Tensor) -> Tuple[Tensor, ...]:
        from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
        head = self.roi_head
        scores = []
        for stage in range(head.num_stages):
            results = head._bbox_forward(stage, feats, rois)
            cls_score, bbox_pred = results['cls_score'], results['bbox_pred']
            scores.append(cls_score)
            if stage == head.num_stages - 1:
                break
            bbox_head = head.bbox_head[stage]
            if bbox_head.custom_activation:
                cls_score = bbox_head.loss_cls.get_activation(cls_score)
            if not bbox_head.reg_class_agnostic:
                label = cls_score[:, :-1].argmax(dim=1) * 4
                bbox_pred = torch.gather(bbox_pred, 1,
                                         torch.stack([label + i for i in range(4)], dim=1))
            coder = bbox_head.bbox_coder
            # mmdet's coder switches to its legacy ONNX decoder while exporting; the
            # regular one gives the same boxes and exports as it is.
            boxes = delta2bbox(rois[:, 1:], bbox_pred, coder.means, coder.stds,
                               image_shape.to(rois.dtype), clip_border=coder.clip_border,
                               add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
            rois = torch.cat([rois[:, :1], boxes], dim=1)
        return sum(scores) / len(scores), bbox_pred, rois
