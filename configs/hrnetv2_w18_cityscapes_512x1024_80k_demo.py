# hrnetv2_w18_cityscapes_512x1024_80k on the synthetic demo data, sized for 2 CPU
# cores exactly as fcn_hrnet_w18_cityscapes_512x1024_80k_demo (demo_hrnet_model in
# _base_/demo_segmentation.py), so the two compare head against head.
_base_ = ['./hrnetv2_w18_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

model = {{_base_.demo_hrnet_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
