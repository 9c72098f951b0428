# EfficientDet-D5 (paper COCO val AP 51.2, not measured by us): the D0 recipe of
# efficientdet_d0_bifpn_coco.py scaled up: EfficientNet-B5 backbone (drop-path 0.2, automl's
# default for every backbone but B0), 288-channel BiFPN with 7 cells, 4 head convs, 1280 px images.
# Same difference from the paper as D0 (mmpretrain's port of the ImageNet checkpoint).
_base_ = './efficientdet_d0_bifpn_coco.py'

image_size = 1280
checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
              'efficientnet-b5_3rdparty_8xb32-aa_in1k_20220119-2cab8b78.pth')

model = dict(
    data_preprocessor=dict(
        pad_size_divisor=image_size,
        batch_augments=[dict(type='BatchFixedSizePad', size=(image_size, image_size))]),
    backbone=dict(arch='b5', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 176, 512], out_channels=288, num_repeats=7),
    bbox_head=dict(in_channels=288, feat_channels=288, stacked_convs=4))

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='RandomResize', scale=(image_size, image_size), ratio_range=(0.1, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=(image_size, image_size)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
