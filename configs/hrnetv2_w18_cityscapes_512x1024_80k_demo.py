# hrnetv2_w18_cityscapes_512x1024_80k on the synthetic demo data, sized for 2 CPU
# cores as fcn_hrnet_w18_cityscapes_512x1024_80k_demo: HRNetV2-W18-Small's block
# counts (W18 widths) trained from scratch (no downloads), BN instead of SyncBN
# (single process, CPU), 256 px crops, 600 iterations. Same settings as the FCN demo,
# so the two compare head against head.
_base_ = ['./hrnetv2_w18_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    pretrained=None,
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(
        norm_cfg=norm_cfg,
        extra=dict(
            stage1=dict(num_blocks=(2, )),
            stage2=dict(num_blocks=(2, 2)),
            stage3=dict(num_modules=3, num_blocks=(2, 2, 2)),
            stage4=dict(num_modules=2, num_blocks=(2, 2, 2, 2)))),
    decode_head=dict(norm_cfg=norm_cfg, num_classes=5))

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
