# DeepLab v1 LargeFOV (Chen et al., ICLR 2015) on PASCAL VOC 2012 + SBD (train_aug):
# VGG-16 at output stride 8 (pool4/pool5 3x3 stride 1, conv5 dilated by 2, 3x3 pools
# as the released prototxt) from torchvision's ImageNet weights, and the LargeFOV head
# (pool5a 3x3 average, fc6 3x3 dilation 12 x 1024, fc7 1x1 x 1024, dropout 0.5 after
# each, fc8 classifier). Recipe of the paper and its released solver: batch 20 of
# 321x321 crops, SGD lr 1e-3, momentum 0.9, weight decay 5e-4, lr x0.1 every 2000
# iterations, 6000 iterations; biases lr x2 without decay, fc8 lr x10 (weights) and x20
# (bias). The paper's CRF post-processing: deeplabv1_crf_vgg16_largefov_voc12aug.py.
_base_ = ['mmseg::_base_/default_runtime.py', './_base_/deeplab_voc12aug.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

# torchvision's VGG-16 takes RGB normalised by ImageNet's mean and std (DeepLab's Caffe
# VGG-16 took BGR minus the mean); padding with 0 after normalising pads with the mean.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(321, 321))
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='VGG16',
        output_stride=8,
        pooling='deeplab',
        out_indices=(4, ),
        init_cfg=dict(type='Pretrained', checkpoint='torchvision://vgg16')),
    decode_head=dict(
        type='LargeFOVHead',
        in_channels=512,
        channels=1024,
        dilation=12,
        dropout_ratio=0.5,
        avg_pool=True,
        num_classes=21,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

train_dataloader = dict(batch_size=20, dataset=dict(datasets={{_base_.deeplabv1_voc12aug}}))

max_iters = 6000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    clip_grad=None,
    paramwise_cfg=dict(
        bias_lr_mult=2.,
        bias_decay_mult=0.,
        custom_keys={
            'decode_head.conv_seg.weight': dict(lr_mult=10.),
            'decode_head.conv_seg.bias': dict(lr_mult=20., decay_mult=0.),
        }))
param_scheduler = [
    dict(type='StepLR', step_size=2000, gamma=0.1, begin=0, end=max_iters, by_epoch=False)
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
