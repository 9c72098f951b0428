# deeplabv2_crf_r101_cityscapes_512x1024_80k on the synthetic demo data: the model of
# deeplabv2_r101_cityscapes_512x1024_80k_demo (a half-width Caffe-style ResNet-18 from
# scratch, trainable BN) with the CRF on; 256 px crops, the demo schedule.
_base_ = ['./deeplabv2_crf_r101_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

model = dict(
    # From scratch, so the inputs need not be Caffe's: mmseg's normalised RGB.
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, size={{_base_.demo_crop_size}}),
    backbone=dict(depth=18, stem_channels=32, base_channels=32,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  init_cfg=None),
    decode_head=dict(in_channels=256, num_classes=5),  # the demo's background + four shapes
    test_cfg=dict(_delete_=True, mode='whole'))
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_boundary_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
