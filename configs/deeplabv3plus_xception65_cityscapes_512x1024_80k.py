# DeepLab v3+ (Chen et al., ECCV 2018) on its own backbone, Aligned Xception-65, from the
# TF DeepLab ImageNet weights (timm's xception65.tf_in1k, converted on load). As the
# paper and TF DeepLab: trained at output stride 16 with ASPP rates 6/12/18 (separable
# atrous convs + image pooling, 256 channels), decoder from the stride-4 feature of
# entry block 2 projected to 48 channels, two 3x3 separable convs of 256; no auxiliary
# head; inputs scaled to [-1, 1]; weight decay 4e-5, none on BN and depthwise weights.
# Evaluate as the paper at output stride 8 with doubled rates (same checkpoint):
#   --cfg-options model.backbone.output_stride=8 model.decode_head.dilations="(1,12,24,36)"
# or test with configs/deeplabv3plus_xception65_cityscapes_512x1024_80k_os8eval.py (the
# same two overrides).
# Everything else is mmseg's deeplabv3plus_r50-d8 Cityscapes 80k recipe (512x1024
# crops, batch 8, SGD lr 0.01, poly); see docs/deeplab.md for where TF's differs.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5]),
    backbone=dict(
        _delete_=True,
        type='AlignedXception',
        depth=65,
        output_stride=16,
        out_indices=(1, 4),
        norm_cfg=dict(type='SyncBN', eps=1e-3, requires_grad=True),
        init_cfg=dict(type='Pretrained', checkpoint='timm://xception65.tf_in1k')),
    decode_head=dict(
        in_channels=2048,
        in_index=1,
        channels=256,
        dilations=(1, 6, 12, 18),
        c1_in_channels=256,
        c1_channels=48),
    auxiliary_head=None)
optim_wrapper = dict(
    optimizer=dict(weight_decay=4e-5),
    paramwise_cfg=dict(norm_decay_mult=0., dwconv_decay_mult=0.))

# TF DeepLab's multi-scale test on Cityscapes: scales 0.75, 1.0, 1.25 with flips (--tta).
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in (0.75, 1.0, 1.25)],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
