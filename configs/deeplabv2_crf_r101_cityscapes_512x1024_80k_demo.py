# deeplabv2_crf_r101_cityscapes_512x1024_80k on the synthetic demo data: the model of
# deeplabv2_r101_cityscapes_512x1024_80k_demo (demo_deeplabv2_model in
# _base_/demo_segmentation.py) with the CRF on; BN, 256 px crops, the demo schedule.
_base_ = ['./deeplabv2_crf_r101_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

model = {{_base_.demo_deeplabv2_model}}
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_boundary_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
