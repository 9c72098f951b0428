# deeplabv2_crf_r101_voc12aug on the synthetic demo data: the model of
# deeplabv2_r101_voc12aug_demo (MSC on a half-width Caffe-style ResNet-18 from scratch)
# with the CRF on; 256 px crops, the demo schedule.
_base_ = ['./deeplabv2_crf_r101_voc12aug.py', './_base_/demo_segmentation.py']

model = dict(
    # From scratch, so the inputs need not be Caffe's: mmseg's normalised RGB.
    data_preprocessor=dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, size={{_base_.demo_crop_size}}),
    backbone=dict(depth=18, stem_channels=32, base_channels=32,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False,
                  init_cfg=None),
    decode_head=dict(in_channels=256, num_classes=5))  # the demo's background + four shapes
# The demo sets replace mmseg's VOC datasets whole (ConcatDataset, ann_file).
train_dataloader = dict(
    _delete_=True,
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset={{_base_.demo_train_dataloader.dataset}})
val_dataloader = dict(
    _delete_=True,
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset={{_base_.demo_val_dataloader.dataset}})
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_boundary_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
