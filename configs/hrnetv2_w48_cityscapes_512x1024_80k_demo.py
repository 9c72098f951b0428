# hrnetv2_w48_cityscapes_512x1024_80k on the synthetic demo data, sized for 2 CPU
# cores: W48 widths with HRNetV2-W18-Small's block counts (demo_hrnet_model in
# _base_/demo_segmentation.py), 256 px crops, 600 iterations.
_base_ = ['./hrnetv2_w48_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

model = {{_base_.demo_hrnet_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
