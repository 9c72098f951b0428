# AugFPN RetinaNet R50, COCO 1x (paper, test-dev: 35.9 -> 37.5 box AP over FPN), as the
# official recipe (configs/retinanet_r50_augfpn_1x.py of Gus-Guo/AugFPN): residual feature
# augmentation in the neck, its global context added to P6 (and so P7), and consistent
# supervision in the official one-stage form: the head's own detections become RoIs that a
# 2-fc box head shared across the laterals M3-M5 classifies and regresses (lambda 0.25 per
# level; see _base_/augfpn_one_stage.py). lr 0.01 at batch 16, gradient clipping at 35.
# Soft RoI selection has no RoIs to act on in a one-stage detector.
# Baseline with the same recipe: augfpn_baseline_retinanet_r50.py.
# The dense variant (a second RetinaHead on the laterals, not the official design):
#   model = dict(type='RetinaNet', bbox_head=dict(type='DenseConsistentSupervisionRetinaHead'))
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/augfpn_one_stage.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
model = dict(
    type='ConsistentSupervisionSingleStageDetector',
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3), rfa_to_extra_levels=True),
    aux_head={{_base_.aux_head}})

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
