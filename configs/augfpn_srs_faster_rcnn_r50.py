# AugFPN ablation: soft RoI selection only (plain FPN neck and RoI head).
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(roi_head=dict(bbox_roi_extractor=dict(type='SoftRoIExtractor')))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
