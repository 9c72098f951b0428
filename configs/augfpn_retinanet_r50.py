# AugFPN RetinaNet R50, COCO 1x (paper, test-dev: 35.9 -> 37.5 box AP over FPN):
# residual feature augmentation in the neck and consistent supervision on the
# laterals M3-M5 (a separate RetinaHead with anchors at strides 8-32, lambda 0.25).
# Soft RoI selection has no RoIs to act on in a one-stage detector.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
model = dict(
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3)),
    bbox_head=dict(type='ConsistentSupervisionRetinaHead', aux_loss_weight=0.25,
                   num_lateral_levels=3))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
