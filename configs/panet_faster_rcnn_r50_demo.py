# panet_faster_rcnn_r50 on the synthetic demo data, sized for 2 CPU cores (see
# demo_faster_rcnn_model in _base_/demo_detection.py: half-width ResNet-18 from scratch,
# 64 pyramid channels, 256 px images, 64 RoIs per image).
_base_ = ['./panet_faster_rcnn_r50.py', './_base_/demo_detection.py']

model = {{_base_.demo_faster_rcnn_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
