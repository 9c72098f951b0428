# DetectoRS's recursive feature pyramid around mmdet's ResNet-50 1x backbone, shared by
# the rfp_*_r50 configs. DetectoRS's configs give the backbone weight-standardised convs
# (ConvAWS). A config takes these in with {{_base_.rfp_r50_backbone}} (the wrapper, with
# mmdet's 256-wide FPN, rfp_steps=2 and a 4 x 64 ASPP) or {{_base_.rfp_convaws_resnet50}}
# (the wrapped ResNet alone, for a wrapper with another neck); the names are prefixed so
# they never collide with a config's own keys.
rfp_convaws_resnet50 = dict(
    type='ResNet',
    depth=50,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    style='pytorch',
    conv_cfg=dict(type='ConvAWS'),
    init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50'))
rfp_r50_backbone = dict(
    _delete_=True,
    type='RecursiveFeaturePyramid',
    backbone=rfp_convaws_resnet50,
    neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
    rfp_steps=2,
    aspp_out_channels=64,
    aspp_dilations=(1, 3, 6, 1))
