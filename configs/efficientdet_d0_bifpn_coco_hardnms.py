# efficientdet_d0_bifpn_coco evaluated with effdet's default post-processing
# (effdet.DetBenchPredict with soft_nms=False): the 5000 best (anchor, class) pairs over all
# levels, no score threshold, hard NMS per class at IoU 0.5, 100 detections, boxes clipped to
# the image and none dropped for being empty. The parity checks of the converted checkpoints
# (tests/tools/test_effdet_converter.py, benchmarks/check_effdet_conversion.py) use its
# test_cfg.
_base_ = './efficientdet_d0_bifpn_coco.py'

model = dict(
    test_cfg=dict(
        _delete_=True,
        nms_pre=5000,
        nms_pre_all_levels=True,
        score_thr=0.0,
        min_bbox_size=-1,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
