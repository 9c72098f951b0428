# Baseline of augfpn_mask_rcnn_r50: mmdet's Mask R-CNN R50-FPN with AugFPN's recipe
# (RoIAlign sampled 2x2 per bin for boxes and masks, gradient clipping at 35).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
model = dict(
    roi_head=dict(
        bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
        mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
