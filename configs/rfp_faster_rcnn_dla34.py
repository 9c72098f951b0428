# DetectoRS's Recursive Feature Pyramid around DLA-34 (ImageNet weights from timm):
# dla34_faster_rcnn_fpn_1x_coco.py with its DLA-34 and FPN run twice, ASPP(P3-P5)
# (4 x 64 channels) fed back into the first block of trees 3-5 of the second pass.
_base_ = './dla34_faster_rcnn_fpn_1x_coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        backbone={{_base_.dla34_backbone}},
        neck=dict(type='FPN', in_channels={{_base_.dla34_channels}}, out_channels=256,
                  num_outs=5),
        rfp_steps=2,
        aspp_out_channels=64,
        aspp_dilations=(1, 3, 6, 1)),
    neck=None)
