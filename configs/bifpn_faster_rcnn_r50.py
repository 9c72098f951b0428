# The Faster R-CNN R50 1x baseline (fpn_faster_rcnn_r50.py, mmdet's config unchanged) with a
# BiFPN in place of the FPN: C2-C5 plus P6 max-pooled from C5 (P2-P6 as the FPN gives),
# 256 channels, 3 cells (EfficientDet-D0's depth), SyncBN in the neck (2 images per GPU are
# too few for plain BN). Everything else is unchanged.
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    neck=dict(
        _delete_=True,
        type='BiFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5,
        num_repeats=3,
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)))
