# rfp_faster_rcnn_dla34 on the synthetic demo data, sized for 2 CPU cores (half-width
# DLA-34 from scratch; see demo_rfp_dla_faster_rcnn_model in _base_/demo_detection.py:
# 64 pyramid channels, ASPP 4 x 16, 256 px images).
_base_ = ['./rfp_faster_rcnn_dla34.py', './_base_/demo_detection.py']

model = {{_base_.demo_rfp_dla_faster_rcnn_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
