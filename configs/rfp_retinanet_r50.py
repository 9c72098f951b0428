# DetectoRS's Recursive Feature Pyramid on a one-stage detector: mmdet's RetinaNet
# R50 1x (COCO) with its ResNet-50 and FPN (P3-P7, extra convs on C5) wrapped by
# RecursiveFeaturePyramid (rfp_steps=2, ASPP feedback 4 x 64 from P4-P5 into stages
# 3-4: the FPN starts at C3, so P3 is the finest level, which is never fed back,
# and P6-P7 have no backbone stage). ConvAWS in the backbone as in DetectoRS.
_base_ = ['mmdet::retinanet/retinanet_r50_fpn_1x_coco.py', './_base_/rfp_r50.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        backbone={{_base_.rfp_convaws_resnet50}},
        neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
                  start_level=1, add_extra_convs='on_input', num_outs=5),
        rfp_steps=2,
        aspp_out_channels=64,
        aspp_dilations=(1, 3, 6, 1)),
    neck=None)
