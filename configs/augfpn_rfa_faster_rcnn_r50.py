# AugFPN ablation: residual feature augmentation only (FPN's RoI head and extractor,
# RoIAlign sampled 2x2 per bin as the other ablations and the full config).
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3)),
    roi_head=dict(bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
