# The paper's Cityscapes recipe for DLA-Up (ucbdrive/dla's segmentation training):
# DLA-102 + DLA-Up to stride 2, crops of 832x832, 16 images per step (8 GPUs x 2),
# SGD lr 0.01, momentum 0.9, weight decay 1e-4, poly decay (power 0.9, to 0) over 500
# epochs, synchronised BN. 500 epochs of the 2975 training images at 16 per step are
# 500 x 185 = 92,500 iterations. Augmentation is mmseg's Cityscapes pipeline with
# 832x832 crops (random resize 0.5-2.0, crop, flip, photometric distortion).
_base_ = './dla34up_cityscapes_512x1024_80k.py'

crop_size = (832, 832)
max_iters = 92500
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(arch='dla102', init_cfg=dict(checkpoint='timm://dla102.in1k')),
    decode_head=dict(in_channels=[32, 128, 256, 512, 1024]))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.01, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters // 10)
default_hooks = dict(checkpoint=dict(interval=max_iters // 10))
