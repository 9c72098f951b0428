# efficientdet_d0_bifpn_coco_demo with effdet's default post-processing (see
# efficientdet_d0_bifpn_coco_hardnms.py).
_base_ = './efficientdet_d0_bifpn_coco_demo.py'

model = dict(
    test_cfg=dict(
        _delete_=True,
        nms_pre=5000,
        nms_pre_all_levels=True,
        score_thr=0.0,
        min_bbox_size=-1,
        nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100))
