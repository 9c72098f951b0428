# hrnetv2p_w32_faster_rcnn_1x_coco on the synthetic demo data, sized to train on 2 CPU
# cores: W32 widths with HRNetV2-W18-Small's block counts, trained from scratch (no
# downloads, BN in train mode; mmdet's HRNet uses plain BN, not SyncBN), 64 pyramid
# channels, 256 px images, 64 RoIs per image.
_base_ = ['./hrnetv2p_w32_faster_rcnn_1x_coco.py', './_base_/demo_detection.py']

model = dict(
    backbone=dict(
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=None,
        extra=dict(
            stage1=dict(num_blocks=(2, )),
            stage2=dict(num_blocks=(2, 2)),
            stage3=dict(num_modules=3, num_blocks=(2, 2, 2)),
            stage4=dict(num_modules=2, num_blocks=(2, 2, 2, 2)))),
    neck=dict(out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=4)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))))

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
