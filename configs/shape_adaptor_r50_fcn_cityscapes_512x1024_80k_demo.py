# shape_adaptor_r50_fcn_cityscapes_512x1024_80k on the synthetic demo data, sized for 2
# CPU cores: the config's ShapeAdaptorResNet as a half-width ResNet-18 (deep stem, widths
# 32-256) from scratch with BN, a 64-channel FCN head, 256 px crops, the 600-iteration demo
# schedule. limit_dim=48 caps the final map at 48 px per side for 256 px crops (stride
# about 5.3), so the memory-limit penalty is part of the loss.
_base_ = ['./shape_adaptor_r50_fcn_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

_demo_norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(depth=18, stem_channels=32, base_channels=32, limit_dim=48,
                  norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=256, channels=64, norm_cfg=_demo_norm_cfg,
                     num_classes=len({{_base_.demo_seg_classes}})),
    auxiliary_head=dict(in_channels=128, channels=32, norm_cfg=_demo_norm_cfg,
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
