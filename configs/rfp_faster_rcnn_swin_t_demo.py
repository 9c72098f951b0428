# rfp_faster_rcnn_swin_t on the synthetic demo data, sized for 2 CPU cores (a one-block-per-
# stage Swin at a third of Swin-T's width, from scratch; see
# demo_rfp_swin_faster_rcnn_model in _base_/demo_detection.py: 64 pyramid channels,
# ASPP 4 x 16, 256 px images). AdamW as the real config, at lr 1e-3 for training
# from scratch (the demos' SGD lr 0.02 would diverge with AdamW).
_base_ = ['./rfp_faster_rcnn_swin_t.py', './_base_/demo_detection.py']

model = {{_base_.demo_rfp_swin_faster_rcnn_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = dict(optimizer=dict(lr=0.001))
default_hooks = {{_base_.demo_default_hooks}}
