# DeepLab v2 (Chen et al., TPAMI 2017) on Cityscapes (train set, 2975 fine images),
# 512x1024 crops, 80k iterations, with v2's model and optimiser: ASPP-L (parallel 3x3
# atrous classifiers at rates 6, 12, 18, 24 whose class scores are summed; no auxiliary
# head) on MSRA's Caffe ResNet-101 (stride on the 1x1 convs, 7x7 stem, BN frozen)
# dilated to output stride 8, BGR inputs minus DeepLab's mean; SGD lr 2.5e-4, momentum
# 0.9, weight decay 5e-4, poly 0.9 to 0; the classifiers at lr x10 (weights) and x20
# (biases, no weight decay); random scale 0.5-1.5 and mirror; single-scale inputs (the
# paper used no MSC on Cityscapes) and overlapping-window testing at full resolution.
# The paper gives no Cityscapes crop, batch or length: crops, batch (4 GPUs x 2) and
# 80k iterations are mmseg's. The paper's CRF post-processing is one switch away:
# deeplabv2_crf_r101_cityscapes_512x1024_80k.py.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

crop_size = (512, 1024)
model = dict(
    pretrained=None,
    data_preprocessor=dict(mean=[104.008, 116.669, 122.675], std=[1., 1., 1.],
                           bgr_to_rgb=False),
    backbone=dict(
        type='ResNet',
        norm_cfg=dict(type='BN', requires_grad=False),
        norm_eval=True,
        style='caffe',
        contract_dilation=False,
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://detectron2/resnet101_caffe')),
    decode_head=dict(
        _delete_=True,
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=3,
        dilations=(6, 12, 18, 24),
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None,
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 682)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))

max_iters = 80000
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
