# Benchmark-only variant (not a recipe): PANet's adaptive feature pooling on the plain
# FPN neck of the fair baseline, so that it differs from the baseline, from soft RoI
# selection and from GenericRoIExtractor in the RoI features only (extractor table of
# docs/panet.md); panet_faster_rcnn_r50_demo adds PANet's PAFPN neck.
_base_ = '../../configs/panet_faster_rcnn_r50_demo.py'

model = dict(neck=dict(type='FPN'))
