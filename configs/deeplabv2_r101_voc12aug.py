# DeepLab v2 (Chen et al., TPAMI 2017) on PASCAL VOC 2012 + SBD (train_aug), as its
# released ResNet-101 prototxts: MSRA's Caffe ResNet-101 (stride on the 1x1 convs, 7x7
# stem, BN frozen: statistics and affine) dilated to output stride 8 (res4 by 2, res5
# by 4), ASPP-L (four 3x3 classifiers at rates 6/12/18/24, scores summed), multi-scale
# inputs 1/0.75/0.5 with max fusion (MSC) and a loss on the fused and on each scale's
# scores. Recipe: batch 10 of 321x321 crops, random scale 0.5-1.5 and mirror, SGD lr
# 2.5e-4, momentum 0.9, weight decay 5e-4, poly 0.9 to 0 over 20k iterations; the
# classifiers at lr x10 (weights) and x20 (biases, no weight decay). Not reproduced:
# the MS-COCO pretraining of the paper's 79.7 (see docs/deeplab.md). The CRF
# post-processing: deeplabv2_crf_r101_voc12aug.py.
_base_ = ['mmseg::_base_/default_runtime.py', './_base_/deeplab_voc12aug.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

# Caffe ResNet-101 inputs: BGR minus DeepLab's mean, not scaled.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[104.008, 116.669, 122.675],
    std=[1., 1., 1.],
    bgr_to_rgb=False,
    pad_val=0,
    seg_pad_val=255,
    size=(321, 321))
model = dict(
    type='MSCEncoderDecoder',
    scales=(1.0, 0.75, 0.5),
    scale_losses=True,
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ResNet',
        depth=101,
        num_stages=4,
        out_indices=(3, ),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='caffe',
        contract_dilation=False,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet101_caffe')),
    decode_head=dict(
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=0,
        dilations=(6, 12, 18, 24),
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

# One GPU; on n GPUs set batch_size=10 // n (the recipe's batch is 10 images).
train_dataloader = dict(batch_size=10, dataset=dict(datasets={{_base_.deeplabv2_voc12aug}}))

max_iters = 20000
# The released prototxt: classifier weights lr x10 (decay x1), biases lr x20 (decay 0);
# the backbone's convolutions have no bias and its BN is frozen.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    clip_grad=None,
    paramwise_cfg=dict(custom_keys={
        **{f'decode_head.classifiers.{i}.weight': dict(lr_mult=10.) for i in range(4)},
        **{f'decode_head.classifiers.{i}.bias': dict(lr_mult=20., decay_mult=0.)
           for i in range(4)},
    }))
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
