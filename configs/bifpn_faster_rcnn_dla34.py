# bifpn_faster_rcnn_r50.py with a DLA-34 backbone (ImageNet weights from timm): the
# BiFPN takes DLA's levels 2-5 (64-512 channels, strides 4-32) plus a max-pooled P6,
# as it takes ResNet's C2-C5. It shows the neck serving a backbone other than the
# EfficientNet it was designed with (mmdet's BiFPN project is hard-wired to that).
_base_ = ['./bifpn_faster_rcnn_r50.py', './_base_/dla_backbones.py']

model = dict(
    backbone={{_base_.dla34_backbone}},
    neck=dict(in_channels={{_base_.dla34_channels}}))
