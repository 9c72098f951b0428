# Benchmark-only variant (not a recipe): the fair FPN baseline's demo with mmdet's
# GenericRoIExtractor (every RoI pooled from every level, summed) in place of
# SingleRoIExtractor, for the extractor table of docs/panet.md.
_base_ = '../../configs/augfpn_baseline_faster_rcnn_r50_demo.py'

model = dict(
    roi_head=dict(bbox_roi_extractor=dict(type='GenericRoIExtractor', aggregation='sum')))
