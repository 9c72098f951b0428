# EfficientDet-D7x (not in the paper; automl's README: COCO val AP 54.4, test-dev 55.1; not
# measured by us): the D0 recipe of efficientdet_d0_bifpn_coco.py scaled up: EfficientNet-B7
# backbone (drop-path 0.2, automl's default for every backbone but B0), 384-channel BiFPN
# with 8 cells, 5 head convs, 1536 px images, unweighted 'sum' fusion (automl: for training
# stability), six levels P3-P8, 600 epochs (automl's README).
# Same difference from the paper as D0 (mmpretrain's port of the ImageNet checkpoint).
_base_ = './efficientdet_d0_bifpn_coco.py'

image_size = 1536
checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
              'efficientnet-b7_3rdparty_8xb32-aa_in1k_20220119-bf03951c.pth')

model = dict(
    data_preprocessor=dict(
        pad_size_divisor=image_size,
        batch_augments=[dict(type='BatchFixedSizePad', size=(image_size, image_size))]),
    backbone=dict(arch='b7', drop_path_rate=0.2, init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[80, 224, 640], out_channels=384, num_repeats=8, fusion_mode='sum',
              num_outs=6),
    bbox_head=dict(
        num_ins=6, in_channels=384, feat_channels=384, stacked_convs=5,
        anchor_generator=dict(strides=[8, 16, 32, 64, 128, 256])))

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

# automl trains D7 and D7x for 600 epochs (D0-D6: 300).
max_epochs = 600
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=917),
    dict(type='CosineAnnealingLR', eta_min=0.0, begin=1, end=max_epochs, T_max=max_epochs - 1,
         by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
