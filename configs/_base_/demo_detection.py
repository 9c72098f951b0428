# Demo-data settings for detection configs (the synthetic scenes of
# `python tools/misc/make_demo_data.py`). A demo config inherits its real config
# plus this file and takes these values in with `{{_base_.demo_*}}`; the names are
# prefixed so that they never collide with the real config's keys.
demo_data_root = 'data/demo/'
demo_classes = ('circle', 'square', 'triangle', 'star')
demo_scale = (256, 256)

# Faster R-CNN sized for 2 CPU cores: a half-width ResNet-18 from scratch instead of
# an ImageNet ResNet-50 (no downloads, and R50 takes ~6.5 s per step on CPU), so
# nothing is frozen and BN runs in train mode; 64 pyramid channels; 1000 proposals
# and 64 sampled RoIs per image in training.
demo_backbone = dict(depth=18, base_channels=32, stem_channels=32, frozen_stages=-1,
                     norm_eval=False, init_cfg=None)
demo_backbone_channels = [32, 64, 128, 256]
# The DLA configs' demo backbone: DLA-34 at half width, from scratch; its levels 2-5
# have demo_backbone_channels, so necks and heads match the ResNet demos.
demo_dla_backbone = dict(channels=(8, 16, 32, 64, 128, 256), frozen_stages=-1,
                         norm_eval=False, init_cfg=None)
demo_faster_rcnn_model = dict(
    backbone=demo_backbone,
    neck=dict(in_channels=demo_backbone_channels, out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=len(demo_classes))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=1000),
                   rcnn=dict(sampler=dict(num=64))))

# The same Faster R-CNN on the half-width DLA-34.
demo_dla_faster_rcnn_model = dict(demo_faster_rcnn_model, backbone=demo_dla_backbone)

# Mask R-CNN: as above, plus a 64-channel mask head.
demo_mask_rcnn_model = dict(
    demo_faster_rcnn_model,
    roi_head=dict(
        demo_faster_rcnn_model['roi_head'],
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(in_channels=64, conv_out_channels=64, num_classes=len(demo_classes))))

# RetinaNet: the same backbone, 64 channels in the neck and the head.
demo_retinanet_model = dict(
    backbone=demo_backbone,
    neck=dict(in_channels=demo_backbone_channels, out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, num_classes=len(demo_classes)))

# FCOS: the same, with a 64-channel GN head (16 groups).
demo_fcos_model = dict(
    backbone=demo_backbone,
    neck=dict(in_channels=demo_backbone_channels, out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, num_classes=len(demo_classes),
                   norm_cfg=dict(type='GN', num_groups=16, requires_grad=True)))
# The one-stage consistent supervision branch at the demo width (64 RoIs per image).
demo_one_stage_aux_head = dict(
    bbox_roi_extractor=dict(out_channels=64),
    bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=len(demo_classes)),
    train_cfg=dict(proposal=dict(nms_pre=1000), sampler=dict(num=64)))
demo_cs_retinanet_model = dict(demo_retinanet_model, aux_head=demo_one_stage_aux_head)
demo_cs_fcos_model = dict(demo_fcos_model, aux_head=demo_one_stage_aux_head)

demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=demo_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=demo_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
demo_train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type='CocoDataset',
        data_root=demo_data_root,
        metainfo=dict(classes=demo_classes),
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=demo_train_pipeline))
demo_val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type='CocoDataset',
        data_root=demo_data_root,
        metainfo=dict(classes=demo_classes),
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=demo_test_pipeline))
demo_val_evaluator = dict(
    type='CocoMetric',
    ann_file=demo_data_root + 'annotations/instances_val.json',
    metric='bbox')

# CenterNet's recipe wraps its training set in a RepeatDataset: replace it whole.
demo_centernet_train_dataloader = dict(
    demo_train_dataloader, dataset=dict(_delete_=True, **demo_train_dataloader['dataset']))
# CenterNet reads where each image lies in its padded input ('border'), which its
# test-time RandomCenterCropPad records; the demo test pipeline does the same.
demo_centernet_val_dataloader = dict(
    demo_val_dataloader,
    dataset=dict(
        demo_val_dataloader['dataset'],
        pipeline=[
            dict(type='LoadImageFromFile', to_float32=True),
            dict(type='RandomCenterCropPad', ratios=None, border=None, mean=[0, 0, 0],
                 std=[1, 1, 1], to_rgb=True, test_mode=True,
                 test_pad_mode=['logical_or', 31], test_pad_add_pix=1),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='PackDetInputs',
                 meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'border')),
        ]))

# RecursiveFeaturePyramid detectors: the demo backbone and neck inside the wrapper
# (ASPP 4 x 16 channels for the 64-channel pyramid), the plain demos' heads, no neck.
demo_rfp_faster_rcnn_model = dict(
    {k: v for k, v in demo_faster_rcnn_model.items() if k not in ('backbone', 'neck')},
    backbone=dict(backbone=demo_backbone, neck=demo_faster_rcnn_model['neck'],
                  aspp_out_channels=16))
demo_rfp_dla_faster_rcnn_model = dict(
    demo_rfp_faster_rcnn_model,
    backbone=dict(demo_rfp_faster_rcnn_model['backbone'], backbone=demo_dla_backbone))
demo_rfp_retinanet_model = dict(
    bbox_head=demo_retinanet_model['bbox_head'],
    backbone=dict(backbone=demo_backbone, neck=demo_retinanet_model['neck'],
                  aspp_out_channels=16))
# Cascade R-CNN: its three stages' heads at the demo width. Lists replace rather than
# merge in mmengine configs, so each head is written out; the stage-wise target stds
# are Cascade R-CNN's.
demo_cascade_bbox_heads = [
    dict(type='Shared2FCBBoxHead', in_channels=64, fc_out_channels=256, roi_feat_size=7,
         num_classes=len(demo_classes), reg_class_agnostic=True,
         bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                         target_stds=target_stds),
         loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
         loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
    for target_stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                        [0.033, 0.033, 0.067, 0.067])
]
demo_rfp_cascade_rcnn_model = dict(
    backbone=demo_rfp_faster_rcnn_model['backbone'],
    rpn_head=demo_faster_rcnn_model['rpn_head'],
    roi_head=dict(bbox_roi_extractor=dict(out_channels=64), bbox_head=demo_cascade_bbox_heads),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=1000),
        rcnn=[
            dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                               min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
                 sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                              add_gt_as_proposals=True),
                 pos_weight=-1, debug=False) for iou in (0.5, 0.6, 0.7)
        ]))
# DetectoRS (RFP + SAC): DetectoRS_ResNet has no basic-block depths, so a ResNet-50 at
# 1/8 width (stage widths demo_backbone_channels), SAC in stages 2-4 as in the paper.
demo_detectors_cascade_rcnn_model = dict(
    demo_rfp_cascade_rcnn_model,
    backbone=dict(
        demo_rfp_cascade_rcnn_model['backbone'],
        backbone=dict(depth=50, base_channels=8, stem_channels=8, frozen_stages=-1,
                      norm_eval=False, init_cfg=None)))
# Swin-T's layout at a third of its width and one block per stage (stage widths
# demo_backbone_channels), from scratch.
demo_rfp_swin_faster_rcnn_model = dict(
    demo_rfp_faster_rcnn_model,
    backbone=dict(
        demo_rfp_faster_rcnn_model['backbone'],
        backbone=dict(embed_dims=32, depths=[1, 1, 1, 1], num_heads=[1, 2, 4, 8], window_size=4,
                      drop_path_rate=0.0, convert_weights=False, init_cfg=None)))

# Instance segmentation: the same data with masks.
demo_mask_train_dataloader = dict(
    demo_train_dataloader,
    dataset=dict(
        demo_train_dataloader['dataset'],
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            *demo_train_pipeline[2:],
        ]))
demo_mask_val_dataloader = dict(
    demo_val_dataloader,
    dataset=dict(
        demo_val_dataloader['dataset'],
        pipeline=[
            *demo_test_pipeline[:2],
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
            demo_test_pipeline[-1],
        ]))
demo_mask_val_evaluator = dict(demo_val_evaluator, metric=['bbox', 'segm'])

# A short CPU schedule: epochs over ~200 images, warm-up in iterations, one decay.
demo_max_epochs = 8
demo_train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=demo_max_epochs,
                      val_interval=demo_max_epochs)
demo_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=demo_max_epochs, by_epoch=True,
         milestones=[6], gamma=0.1),
]
demo_optim_wrapper = dict(optimizer=dict(lr=0.02))
demo_default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=demo_max_epochs, max_keep_ckpts=1))
