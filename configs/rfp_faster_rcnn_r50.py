# DetectoRS's Recursive Feature Pyramid on mmdet's Faster R-CNN R50 1x (COCO): the
# ResNet-50 and FPN of fpn_faster_rcnn_r50.py run twice (rfp_steps=2), the second
# pass fed back with ASPP(P3-P5) (4 x 64 channels) into stages 2-4, separate backbone
# weights per pass, both passes fused by the learned gate. The backbone uses
# weight-standardised convs (ConvAWS), as DetectoRS's RFP configs do. The wrapper is
# the detector's backbone and returns the pyramid, so the detector has no neck.
_base_ = './fpn_faster_rcnn_r50.py'

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
