# Baseline: mmdet's Faster R-CNN R50-FPN, 1x schedule on COCO, unchanged. Every
# detection method of this package is compared against this config.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
