# panet_mask_rcnn_r50 on the synthetic demo data, sized for 2 CPU cores (see
# demo_mask_rcnn_model in _base_/demo_detection.py).
_base_ = ['./panet_mask_rcnn_r50.py', './_base_/demo_detection.py']

model = {{_base_.demo_mask_rcnn_model}}
train_dataloader = {{_base_.demo_mask_train_dataloader}}
val_dataloader = {{_base_.demo_mask_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_mask_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
