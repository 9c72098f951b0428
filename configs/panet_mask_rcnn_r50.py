# PANet Mask R-CNN R50 (Liu et al., CVPR 2018): PAFPN and adaptive feature pooling in the
# box head (per-level first fc, max fusion) and the mask head (per-level first conv, max
# fusion, then the other three convs), RoIAlign with 2x2 samples per bin; mmdet's 1x
# recipe with AugFPN's gradient clip (compare augfpn_mask_rcnn_r50 and
# augfpn_baseline_mask_rcnn_r50). PANet's fully connected mask fusion is not included.
_base_ = './augfpn_baseline_mask_rcnn_r50.py'

model = dict(
    neck=dict(type='PAFPN'),
    roi_head=dict(
        bbox_roi_extractor=dict(type='AllLevelRoIExtractor'),
        bbox_head=dict(type='AdaptiveFeaturePoolingBBoxHead', num_shared_fcs=2, num_levels=4,
                       fusion='max'),
        mask_roi_extractor=dict(type='AllLevelRoIExtractor'),
        mask_head=dict(type='AdaptiveFeaturePoolingMaskHead', num_levels=4, fusion='max')))
