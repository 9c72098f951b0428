# PANet Faster R-CNN R50 (Liu et al., CVPR 2018): mmdet's PAFPN neck (bottom-up path
# augmentation) and adaptive feature pooling: every RoI pooled from P2-P5 (RoIAlign 7x7,
# 2x2 samples per bin as PANet's configs), each level through its own first fc + ReLU,
# fused by element-wise max, then the second fc and the predictors. mmdet's 1x recipe
# otherwise, with AugFPN's gradient clip so that it compares with augfpn_faster_rcnn_r50
# and augfpn_baseline_faster_rcnn_r50. PANet's own recipe differs (GN heads and FPN,
# multi-scale training): see docs/panet.md.
_base_ = './augfpn_baseline_faster_rcnn_r50.py'

model = dict(
    neck=dict(type='PAFPN'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='AllLevelRoIExtractor'),
        bbox_head=dict(type='AdaptiveFeaturePoolingBBoxHead', num_shared_fcs=2, num_levels=4,
                       fusion='max')))
