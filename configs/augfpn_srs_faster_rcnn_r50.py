# AugFPN ablation: soft RoI selection only (plain FPN neck and RoI head; RoIAlign
# sampled 2x2 per bin as the other ablations and the full config).
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    roi_head=dict(
        bbox_roi_extractor=dict(type='SoftRoIExtractor', roi_layer=dict(sampling_ratio=2))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
