# Shape Adaptor (Liu et al., ECCV 2020) in Faster R-CNN R50-FPN, 1x schedule on COCO:
# mmdet's recipe with the ResNet-50 replaced by ShapeAdaptorResNet (same weights, stages at
# stride 1, 4 shape adaptors between the residual blocks, initial factors 0.595 that
# multiply to the usual overall stride 32). Anchors and the RoI extractor assume strides
# 4-32, so every level is resized to its nominal ceil(input / stride) size
# (resize_outputs=True). Alphas train with their own SGD group (lr 0.1, momentum 0.9,
# Nesterov, no decay); ShapeAdaptorFasterRCNN adds the memory-limit penalty to the losses
# when limit_dim is set.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    type='ShapeAdaptorFasterRCNN',
    backbone=dict(
        type='ShapeAdaptorResNet',
        target_stride=32,
        r1=0.5,
        r2=1.0,
        size_rule='local',
        limit_dim=None,
        resize_outputs=True))
optim_wrapper = dict(
    constructor='ShapeAdaptorOptimWrapperConstructor',
    paramwise_cfg=dict(alpha_cfg=dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)))
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=50)]
