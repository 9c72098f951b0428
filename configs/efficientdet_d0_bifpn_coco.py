# EfficientDet-D0 (Tan et al., CVPR 2020; paper COCO val AP 34.3, not measured by us) with
# mmdet's EfficientNet-B0 backbone, our BiFPN neck (64 channels, 3 cells) and our
# EfficientDetSepBNHead, the paper's class/box nets (separable convs shared across levels,
# BN per level, Swish), trained with the paper's recipe: 8 GPUs x 16 images (batch 128), 512 px
# crops after scale jitter [0.1, 2.0], SGD lr 0.16 / momentum 0.9 / weight decay 4e-5,
# one epoch of linear warm-up then cosine decay over 300 epochs, EMA 0.9998, SyncBN
# (eps 1e-3, momentum 0.01), focal loss gamma 1.5, Huber box loss (delta 0.1, weight 50)
# and soft-NMS at test time.
#
# What differs from the paper: the ImageNet backbone is mmpretrain's port of the TensorFlow
# AutoAugment checkpoint.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

image_size = 512
norm_cfg = dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)
checkpoint = 'https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117.pth'  # noqa: E501

model = dict(
    data_preprocessor=dict(
        # BiFPN resamples to exact neighbour sizes, so any padding works; 128 keeps every
        # level (strides 8-128) exactly half the one below. Training batches are padded to
        # the fixed crop size.
        pad_size_divisor=128,
        batch_augments=[dict(type='BatchFixedSizePad', size=(image_size, image_size))]),
    backbone=dict(
        _delete_=True,
        type='EfficientNet',
        arch='b0',
        drop_path_rate=0.2,
        out_indices=(3, 4, 5),  # strides 8, 16, 32: 40, 112, 320 channels
        frozen_stages=0,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', prefix='backbone', checkpoint=checkpoint)),
    neck=dict(
        _delete_=True,
        type='BiFPN',
        in_channels=[40, 112, 320],
        out_channels=64,
        num_outs=5,  # P3-P7: P6 and P7 by max-pooling the last input
        num_repeats=3,
        fusion_mode='fastattn',
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='EfficientDetSepBNHead',
        num_ins=5,
        in_channels=64,
        feat_channels=64,
        stacked_convs=3,
        norm_cfg=norm_cfg,
        # EfficientDet's anchors: scale 4, 3 octave scales, ratios 1:2, 1:1, 2:1, centred
        # on the cells.
        anchor_generator=dict(center_offset=0.5),
        loss_cls=dict(gamma=1.5, alpha=0.25),
        # Huber(delta 0.1) x 50 over 4 * positives == SmoothL1(beta 0.1) x 1.25 over positives.
        loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=0.1, loss_weight=1.25)),
    train_cfg=dict(assigner=dict(neg_iou_thr=0.5)),
    test_cfg=dict(
        nms=dict(_delete_=True, type='soft_nms', iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                 method='gaussian')))

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
train_dataloader = dict(batch_size=16, num_workers=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.16, momentum=0.9, weight_decay=4e-5),
    paramwise_cfg=dict(norm_decay_mult=0, bias_decay_mult=0, bypass_duplicate=True),
    clip_grad=dict(max_norm=10, norm_type=2))

max_epochs = 300
param_scheduler = [
    # One epoch of warm-up: 117266 COCO train images / 128 per step = 917 steps.
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=917),
    dict(type='CosineAnnealingLR', eta_min=0.0, begin=1, end=max_epochs, T_max=max_epochs - 1,
         by_epoch=True, convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
default_hooks = dict(checkpoint=dict(interval=10, max_keep_ckpts=3))
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True,
         priority=49),
]
env_cfg = dict(cudnn_benchmark=True)
# base_batch_size = 8 GPUs x 16 images.
auto_scale_lr = dict(base_batch_size=128)
