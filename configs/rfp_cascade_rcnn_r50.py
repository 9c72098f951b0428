# DetectoRS's Recursive Feature Pyramid alone (no SAC) on mmdet's Cascade R-CNN R50 1x
# (COCO): the paper's "RFP" row, 44.8 box AP on COCO val.
# The ResNet-50 (ConvAWS, as DetectoRS) and FPN run twice, ASPP(P3-P5) (4 x 64
# channels) fed back into stages 2-4 of the second pass, the passes fused by the
# learned gate; the wrapper is the backbone and the detector has no neck.
_base_ = 'mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        backbone=dict(
            type='ResNet',
            depth=50,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type='BN', requires_grad=True),
            norm_eval=True,
            style='pytorch',
            conv_cfg=dict(type='ConvAWS'),
            init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')),
        neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rfp_steps=2,
        aspp_out_channels=64,
        aspp_dilations=(1, 3, 6, 1)),
    neck=None)
