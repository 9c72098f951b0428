# deeplabv3plus_xception65_voc12aug on the synthetic demo data, sized for 2 CPU cores: the
# shallowest Aligned Xception (41; the layer order of 65) at a quarter of its widths
# (widen_factor=0.25: 512 final and 64 low-level channels) from scratch at output stride
# 16, BN instead of SyncBN, a 64-channel ASPP and a 16-channel low-level projection, 256
# px crops and the 600-iteration demo schedule.
_base_ = ['./deeplabv3plus_xception65_voc12aug.py', './_base_/demo_segmentation.py']

_demo_norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(depth=41, widen_factor=0.25,
                  norm_cfg=dict(type='BN', eps=1e-3, requires_grad=True), init_cfg=None),
    decode_head=dict(in_channels=512, c1_in_channels=64, channels=64, c1_channels=16,
                     norm_cfg=_demo_norm_cfg,
                     num_classes=5))  # the demo's background + four shapes
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
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
default_hooks = {{_base_.demo_default_hooks}}
