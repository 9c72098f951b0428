# shape_adaptor_r50_faster_rcnn_1x_coco on the synthetic demo data, sized for 2 CPU cores:
# the config's ShapeAdaptorResNet as a half-width ResNet-18 (widths 32-256) from scratch,
# 64 pyramid channels, 256 px images, 64 RoIs per image, the 8-epoch demo schedule.
# limit_dim=16 caps the last adaptor's map near stride 16 for 256 px images, so the
# memory-limit penalty is part of the loss.
_base_ = ['./shape_adaptor_r50_faster_rcnn_1x_coco.py', './_base_/demo_detection.py']

model = dict(
    backbone=dict(depth=18, base_channels=32, stem_channels=32, frozen_stages=-1,
                  norm_eval=False, limit_dim=16, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256,
                       num_classes=len({{_base_.demo_classes}}))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=1000),
                   rcnn=dict(sampler=dict(num=64))))
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr=0.02))
default_hooks = {{_base_.demo_default_hooks}}
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=10)]
