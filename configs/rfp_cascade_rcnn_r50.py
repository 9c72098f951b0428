# DetectoRS's Recursive Feature Pyramid alone (no SAC) on mmdet's Cascade R-CNN R50 1x
# (COCO). Expected: 44.8 box AP on COCO val, mmdet's re-implementation
# (configs/detectors/cascade-rcnn_r50-rfp_1x_coco, single-scale 1x), not a paper number:
# the paper's RFP/DetectoRS results are on HTC, multi-scale training, 40 epochs.
# mmdet's checkpoint converts to this config (tools/model_converters/detectors2mmplug.py,
# docs/model_zoo.md).
# The ResNet-50 (ConvAWS, as DetectoRS) and FPN run twice, ASPP(P3-P5) (4 x 64
# channels) fed back into stages 2-4 of the second pass, the passes fused by the
# learned gate; the wrapper is the backbone and the detector has no neck.
_base_ = ['mmdet::cascade_rcnn/cascade-rcnn_r50_fpn_1x_coco.py', './_base_/rfp_r50.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(backbone={{_base_.rfp_r50_backbone}}, neck=None)
