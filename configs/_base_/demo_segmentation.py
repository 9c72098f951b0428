# Demo-data settings for segmentation configs (the same synthetic scenes as the
# detection demo, as image + label-PNG pairs). Used like _base_/demo_detection.py:
# a demo config inherits its real config plus this file and takes these values in
# with `{{_base_.demo_*}}`.
demo_data_root = 'data/demo/'
demo_seg_classes = ('background', 'circle', 'square', 'triangle', 'star')
demo_seg_palette = [(0, 0, 0), (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0)]
demo_crop_size = (256, 256)
demo_data_preprocessor = dict(size=demo_crop_size)

# HRNet segmentors sized for 2 CPU cores: HRNetV2-W18-Small's block counts (each
# config keeps its widths), trained from scratch (no downloads), BN instead of SyncBN
# (single process, CPU).
_demo_norm_cfg = dict(type='BN', requires_grad=True)
demo_hrnet_model = dict(
    pretrained=None,
    data_preprocessor=demo_data_preprocessor,
    backbone=dict(
        norm_cfg=_demo_norm_cfg,
        extra=dict(
            stage1=dict(num_blocks=(2, )),
            stage2=dict(num_blocks=(2, 2)),
            stage3=dict(num_modules=3, num_blocks=(2, 2, 2)),
            stage4=dict(num_modules=2, num_blocks=(2, 2, 2, 2)))),
    decode_head=dict(norm_cfg=_demo_norm_cfg, num_classes=len(demo_seg_classes)))

# DLA-Up segmentors: the config's DLA at half width (levels 1-5 of 16-256 channels),
# from scratch, BN; the DLA-Up head takes the same five levels.
_demo_dla_channels = (8, 16, 32, 64, 128, 256)
demo_dla_up_model = dict(
    data_preprocessor=demo_data_preprocessor,
    backbone=dict(channels=_demo_dla_channels, norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=list(_demo_dla_channels[1:]), norm_cfg=_demo_norm_cfg,
                     num_classes=len(demo_seg_classes)))

# DeepLab segmentors. Dilated ResNet: mmseg's ResNetV1c-18 at half width (stages of
# 32-256 channels, output stride 8), from scratch.
demo_deeplabv2_model = dict(
    pretrained=None,
    data_preprocessor=demo_data_preprocessor,
    backbone=dict(depth=18, stem_channels=32, base_channels=32, norm_cfg=_demo_norm_cfg,
                  init_cfg=None),
    decode_head=dict(in_channels=256, num_classes=len(demo_seg_classes)))
# DeepLab v3+ on the half-width DLA-34 (output stride 8; levels 2, 4, 5 of 32, 128 and
# 256 channels) with a 64-channel ASPP.
demo_deeplabv3plus_dla_model = dict(
    data_preprocessor=demo_data_preprocessor,
    backbone=dict(channels=_demo_dla_channels, norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=256, c1_in_channels=32, channels=64, c1_channels=16,
                     norm_cfg=_demo_norm_cfg, num_classes=len(demo_seg_classes)),
    auxiliary_head=dict(in_channels=128, channels=64, norm_cfg=_demo_norm_cfg,
                        num_classes=len(demo_seg_classes)))
# DeepLab v3+ on the demo HRNet, with a 64-channel ASPP.
demo_deeplabv3plus_hrnet_model = dict(
    demo_hrnet_model,
    decode_head=dict(channels=64, c1_channels=16, norm_cfg=_demo_norm_cfg,
                     num_classes=len(demo_seg_classes)))

demo_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=demo_crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=demo_crop_size, cat_max_ratio=0.9),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
demo_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=demo_crop_size, keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
_demo_dataset = dict(
    type='BaseSegDataset',
    data_root=demo_data_root,
    metainfo=dict(classes=demo_seg_classes, palette=demo_seg_palette),
    img_suffix='.png',
    seg_map_suffix='.png',
    reduce_zero_label=False)
demo_train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        **_demo_dataset,
        data_prefix=dict(img_path='images/train', seg_map_path='seg/train'),
        pipeline=demo_train_pipeline))
demo_val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        **_demo_dataset,
        data_prefix=dict(img_path='images/val', seg_map_path='seg/val'),
        pipeline=demo_test_pipeline))
demo_val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
# mIoU plus mIoU within 4 px of the ground-truth boundaries (DeepLab's trimap
# evaluation), for comparing post-processing such as the dense CRF.
demo_boundary_val_evaluator = [
    demo_val_evaluator,
    dict(type='TrimapIoUMetric', band_width=4, iou_metrics=['mIoU']),
]

# A short CPU schedule in iterations, polynomial decay as the real schedules.
demo_max_iters = 600
demo_train_cfg = dict(type='IterBasedTrainLoop', max_iters=demo_max_iters,
                      val_interval=demo_max_iters)
demo_param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=demo_max_iters, by_epoch=False)
]
demo_default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=demo_max_iters, max_keep_ckpts=1))
