# dla102up_cityscapes_832_poly on the synthetic demo data, sized for 2 CPU cores
# (demo_dla_up_model in _base_/demo_segmentation.py: the config's DLA at half width from
# scratch, BN, 256 px crops, the 600-iteration demo schedule).
_base_ = ['./dla102up_cityscapes_832_poly.py', './_base_/demo_segmentation.py']

model = {{_base_.demo_dla_up_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
