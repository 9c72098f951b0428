# DetectoRS (RFP + SAC) on mmdet's Cascade R-CNN R50 1x (COCO): the paper's
# 47.4 box AP on COCO val. rfp_cascade_rcnn_r50.py with mmdet's DetectoRS_ResNet as
# the wrapped backbone, used as a plain backbone: switchable atrous convolution
# (deformable, as DetectoRS) in the 3x3 convs of stages 2-4, ConvAWS elsewhere; the
# recursion is this package's wrapper, not mmdet's RFP neck.
_base_ = './rfp_cascade_rcnn_r50.py'

model = dict(
    backbone=dict(
        backbone=dict(
            type='DetectoRS_ResNet',
            sac=dict(type='SAC', use_deform=True),
            stage_with_sac=(False, True, True, True))))
