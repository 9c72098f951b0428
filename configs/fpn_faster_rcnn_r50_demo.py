# fpn_faster_rcnn_r50 on the synthetic demo data, sized to train on 2 CPU cores in
# minutes: ResNet-18 from scratch instead of an ImageNet ResNet-50 (no downloads,
# and R50 takes ~6.5 s per step on CPU), trained from scratch so nothing is frozen and
# BN runs in train mode, 64 pyramid channels, 256 px images, 128 RoIs per image.
_base_ = ['./fpn_faster_rcnn_r50.py', './_base_/demo_detection.py']

model = dict(
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=4)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=128))))

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
