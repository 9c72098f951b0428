# DeepLab v2 on Cityscapes, 512x1024 crops, 80k iterations: ASPP-L (parallel 3x3
# atrous classifiers at rates 6, 12, 18, 24 whose class scores are summed) on mmseg's
# dilated ResNet-101 (output stride 8, ImageNet weights). Backbone, data and schedule
# are mmseg's deeplabv3_r101-d8 Cityscapes recipe; v2 has no auxiliary head. The
# paper's CRF post-processing is one switch away: deeplabv2_crf_r101_cityscapes_512x1024_80k.py.
_base_ = 'mmseg::deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    decode_head=dict(
        _delete_=True,
        type='DeepLabV2Head',
        in_channels=2048,
        in_index=3,
        dilations=(6, 12, 18, 24),
        num_classes=19,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)
