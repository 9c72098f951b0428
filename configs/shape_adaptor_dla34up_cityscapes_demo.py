# shape_adaptor_dla34up_cityscapes on the synthetic demo data, sized for 2 CPU cores: the
# config's ShapeAdaptorDLA at half width (levels 1-5 of 16-256 channels) from scratch, BN,
# 256 px crops, the 600-iteration demo schedule.
_base_ = ['./shape_adaptor_dla34up_cityscapes.py', './_base_/demo_segmentation.py']

_demo_norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(channels=(8, 16, 32, 64, 128, 256), norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128, 256], norm_cfg=_demo_norm_cfg,
                     num_classes=len({{_base_.demo_seg_classes}})))
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=10)]
