# DetectoRS's Recursive Feature Pyramid on mmdet's Faster R-CNN R50 1x (COCO): the
# ResNet-50 and FPN of fpn_faster_rcnn_r50.py run twice (rfp_steps=2), the second
# pass fed back with ASPP(P3-P5) (4 x 64 channels) into stages 2-4, separate backbone
# weights per pass, both passes fused by the learned gate. The backbone uses
# weight-standardised convs (ConvAWS), as DetectoRS's RFP configs do. The wrapper is
# the detector's backbone and returns the pyramid, so the detector has no neck.
_base_ = ['./fpn_faster_rcnn_r50.py', './_base_/rfp_r50.py']

model = dict(backbone={{_base_.rfp_r50_backbone}}, neck=None)
