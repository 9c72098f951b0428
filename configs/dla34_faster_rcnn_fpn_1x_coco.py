# Faster R-CNN with a DLA-34 backbone (ImageNet weights from timm) and mmdet's FPN
# over levels 2-5 (strides 4-32), 1x schedule on COCO. Everything but the backbone is
# fpn_faster_rcnn_r50.py (mmdet's R50-FPN 1x baseline): our DLA-34 vs ResNet-50
# comparison in mmdet's recipe. No paper number: the DLA paper (Yu et al., CVPR 2018)
# has no object-detection experiments (classification, fine-grained recognition,
# semantic segmentation, boundary detection).
_base_ = ['./fpn_faster_rcnn_r50.py', './_base_/dla_backbones.py']

model = dict(
    backbone={{_base_.dla34_backbone}},
    neck=dict(in_channels={{_base_.dla34_channels}}))
