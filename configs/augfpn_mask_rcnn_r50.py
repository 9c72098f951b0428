# AugFPN Mask R-CNN R50, COCO 1x (paper, test-dev: 37.5/34.4 -> 39.5/36.3 box/mask AP
# over FPN): AugFPN neck, soft RoI selection for the box and the mask RoIs, and
# consistent supervision with auxiliary box and mask losses on the laterals; RoIAlign
# with 2x2 samples per bin, as the official code (see augfpn_faster_rcnn_r50.py).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
model = dict(
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3)),
    roi_head=dict(
        type='ConsistentSupervisionRoIHead',
        aux_loss_weight=0.25,
        share_aux_head=False,
        bbox_roi_extractor=dict(type='SoftRoIExtractor', roi_layer=dict(sampling_ratio=2)),
        mask_roi_extractor=dict(type='SoftRoIExtractor', roi_layer=dict(sampling_ratio=2))))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
