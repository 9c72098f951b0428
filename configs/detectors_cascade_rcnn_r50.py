# DetectoRS (RFP + SAC) on mmdet's Cascade R-CNN R50 1x (COCO). Expected: 47.4 box AP
# on COCO val, mmdet's re-implementation (configs/detectors/detectors_cascade-rcnn_r50_1x_coco,
# single-scale 1x), not a paper number: the paper's DetectoRS is HTC, multi-scale, 40
# epochs. mmdet's checkpoint converts to this config (docs/model_zoo.md).
# rfp_cascade_rcnn_r50.py with mmdet's DetectoRS_ResNet as
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
