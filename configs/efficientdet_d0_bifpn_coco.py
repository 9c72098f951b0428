# EfficientDet-D0 (Tan et al., CVPR 2020; paper COCO val AP 34.3, not measured by us) with
# mmdet's EfficientNet-B0 backbone, our BiFPN neck (64 channels, 3 cells) and our
# EfficientDetSepBNHead, the paper's class/box nets (separable convs shared across levels,
# BN per level, Swish), trained with the paper's recipe: 8 GPUs x 16 images (batch 128), 512 px
# crops after scale jitter [0.1, 2.0], SGD lr 0.16 / momentum 0.9 / weight decay 4e-5,
# one epoch of linear warm-up then cosine decay over 300 epochs, EMA 0.9998, SyncBN
# (eps 1e-3, momentum 0.01), focal loss gamma 1.5, Huber box loss (delta 0.1, weight 50),
# no backbone drop-path for B0 (automl switches it off for B0 only; effdet uses 0.1), and
# automl's evaluation: the 5000 best (anchor, class) pairs over all levels with score > 0.001,
# Gaussian soft-NMS (sigma 0.5), 100 detections. TensorFlow's SAME padding throughout (mmdet's
# EfficientNet pads its convs so, our BiFPN its max-pools), so effdet's tf_efficientdet_d0
# checkpoint converts exactly (tools/model_converters/effdet2mmplug.py, docs/model_zoo.md).
#
# What differs from the paper: the ImageNet backbone is mmpretrain's port of the TensorFlow
# AutoAugment checkpoint.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

image_size = 512
norm_cfg = dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)
checkpoint = ('https://download.openmmlab.com/mmclassification/v0/efficientnet/'
              'efficientnet-b0_3rdparty_8xb32-aa_in1k_20220119-8d939117.pth')

model = dict(
    data_preprocessor=dict(
        # Every image is padded to the full square (the resized image fits in it), with the
        # mean colour (0 after normalisation), as automl and effdet evaluate.
        pad_size_divisor=image_size,
        batch_augments=[dict(type='BatchFixedSizePad', size=(image_size, image_size))]),
    backbone=dict(
        _delete_=True,
        type='EfficientNet',
        arch='b0',
        drop_path_rate=0.0,
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
        pool_padding='same',
        norm_cfg=norm_cfg),
    bbox_head=dict(
        type='EfficientDetSepBNHead',
        num_ins=5,
        in_channels=64,
        feat_channels=64,
        stacked_convs=3,
        norm_cfg=norm_cfg,
        # EfficientDet's anchors: scale 4, 3 octave scales, shapes (w, h) 1.4x0.7, 1x1,
        # 0.7x1.4 (effdet's and the checkpoints' rounding of sqrt(2)), centred on the cells.
        anchor_generator=dict(
            _delete_=True,
            type='EfficientDetAnchorGenerator',
            octave_base_scale=4,
            scales_per_octave=3,
            strides=[8, 16, 32, 64, 128],
            center_offset=0.5),
        loss_cls=dict(gamma=1.5, alpha=0.25),
        # Huber(delta 0.1) x 50 over 4 * positives == SmoothL1(beta 0.1) x 1.25 over positives.
        loss_bbox=dict(_delete_=True, type='SmoothL1Loss', beta=0.1, loss_weight=1.25)),
    train_cfg=dict(assigner=dict(neg_iou_thr=0.5)),
    test_cfg=dict(
        nms_pre=5000,
        nms_pre_all_levels=True,
        score_thr=0.001,
        # mmcv's Gaussian soft-NMS ignores iou_threshold; it decays by exp(-iou^2 / sigma).
        nms=dict(_delete_=True, type='soft_nms', iou_threshold=0.3, sigma=0.5, min_score=1e-3,
                 method='gaussian'),
        max_per_img=100))

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
