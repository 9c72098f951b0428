# Baseline of the AugFPN Faster R-CNN configs (augfpn_faster_rcnn_r50 and its ablations):
# mmdet's Faster R-CNN R50-FPN with AugFPN's recipe, RoIAlign sampled 2x2 per bin and
# gradient clipping at 35 as the official FPN baseline, so the configs differ only in
# the method. (fpn_faster_rcnn_r50.py stays mmdet's config, unchanged.)
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(roi_head=dict(bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
