# DLA-34 + DLA-Up (the paper's DLASeg) on Cityscapes, 512x1024 crops, 80k iterations:
# mmseg's standard Cityscapes recipe (the one of fcn_r50-d8_4xb2-80k, SyncBN, SGD
# lr 0.01, poly) with the segmentor replaced. DLA-34 (ImageNet weights from timm)
# gives levels 1-5 (strides 2-32); DLA-Up aggregates them in the paper's form (1x1
# projections, bilinear-initialised deconvs, 3x3 nodes over concatenations) to
# stride 2 with 32 channels, and a 1x1 classifier follows (no dropout, no auxiliary
# head, as the paper). The paper's own recipe is dla102up_cityscapes_832_poly.py.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DLA',
        arch='dla34',
        out_indices=(1, 2, 3, 4, 5),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='timm://dla34.in1k')),
    decode_head=dict(
        _delete_=True,
        type='DLAUpHead',
        in_channels=[32, 64, 128, 256, 512],
        in_index=(0, 1, 2, 3, 4),
        num_classes=19,
        dropout_ratio=0.,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=None)
