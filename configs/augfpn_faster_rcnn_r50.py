# AugFPN Faster R-CNN R50, COCO 1x (paper, test-dev: 36.5 -> 38.8 box AP over FPN):
# residual feature augmentation in the neck, soft RoI selection in the RoI
# extractor and consistent supervision on the laterals (lambda = 0.25, a separate
# auxiliary head shared across levels), trained as the official code: lr 0.02 at
# batch 16, 12 epochs, gradient clipping at 35, and RoIAlign with 2x2 samples per
# bin (the official code's sample_num=2, mmdet v1's default for every detector of
# the paper; mmdet 3 samples adaptively, which costs far more when a large RoI is
# pooled from a fine level, as soft RoI selection and consistent supervision do).
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3)),
    roi_head=dict(
        type='ConsistentSupervisionRoIHead',
        aux_loss_weight=0.25,
        share_aux_head=False,
        bbox_roi_extractor=dict(type='SoftRoIExtractor', roi_layer=dict(sampling_ratio=2))))

optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
