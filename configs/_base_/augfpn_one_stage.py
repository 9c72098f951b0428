# AugFPN's consistent supervision for one-stage detectors, as the official RetinaNet and FCOS
# recipes (Gus-Guo/AugFPN: configs/retinanet_r50_augfpn_1x.py, single_stage.py): the dense
# head's detections (top 2000 per level, score > 0.01, NMS 0.7, at most 1000 per image) are
# assigned (MaxIoU 0.5) and sampled (512, 25% positive, ground truth added) as R-CNN RoIs,
# pooled 7x7 (sampling 2) from every lateral M3-M5, and a 2-fc box head shared across the
# levels adds 0.25 x (CE + smooth L1) per level. Configs take `aux_head` from here and set
# its num_classes.
aux_head = dict(
    type='LateralSupervisionRoIHead',
    loss_weight=0.25,
    bbox_roi_extractor=dict(
        type='AllLevelRoIExtractor', out_channels=256, featmap_strides=[8, 16, 32],
        roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2)),
    bbox_head=dict(
        type='Shared2FCBBoxHead', in_channels=256, fc_out_channels=1024, roi_feat_size=7,
        num_classes=80, reg_class_agnostic=False,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                        target_stds=[0.1, 0.1, 0.2, 0.2]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
    train_cfg=dict(
        proposal=dict(nms_pre=2000, score_thr=0.01, min_bbox_size=0,
                      nms=dict(type='nms', iou_threshold=0.7), max_per_img=1000),
        assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.5,
                      ignore_iof_thr=-1),
        sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1,
                     add_gt_as_proposals=True),
        pos_weight=-1))
