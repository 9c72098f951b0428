# deeplabv1_vgg16_largefov_voc12aug on the synthetic demo data, sized for 2 CPU cores:
# the same VGG-16 (its thirteen convolutions cannot be thinned without leaving VGG-16)
# from scratch with BN after each convolution (trains from scratch in the demo's 600
# iterations), a 64-channel LargeFOV head, 256 px crops and the demo schedule.
_base_ = ['./deeplabv1_vgg16_largefov_voc12aug.py', './_base_/demo_segmentation.py']

model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None),
    decode_head=dict(channels=64, num_classes=5))  # the demo's background + four shapes
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
