# DeepLab v3+ (Chen et al., ECCV 2018) on Aligned Xception-65 for PASCAL VOC 2012 with
# the SBD augmented training set (10,582 images), from the TF DeepLab ImageNet weights
# (timm's xception65.tf_in1k, converted on load). Model as
# deeplabv3plus_xception65_cityscapes_512x1024_80k.py: output stride 16, ASPP rates
# 6/12/18, 48-channel low-level projection, no auxiliary head. Schedule as TF DeepLab's
# train_aug recipe: 30k iterations of batch 16 (4 GPUs x 4), lr 0.007 with poly 0.9
# decay to 0, momentum 0.9, weight decay 4e-5 (none on BN and depthwise weights).
# Evaluate as the paper at output stride 8 with doubled rates (same checkpoint):
#   --cfg-options model.backbone.output_stride=8 model.decode_head.dilations="(1,12,24,36)"
# or test with configs/deeplabv3plus_xception65_voc12aug_os8eval.py (the same two overrides).
# and add --tta for the paper's multi-scale (0.5-1.75) + flip test.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py'

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

max_iters = 30000
optim_wrapper = dict(
    optimizer=dict(lr=0.007, weight_decay=4e-5),
    paramwise_cfg=dict(norm_decay_mult=0., dwconv_decay_mult=0.))
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=3000)
default_hooks = dict(checkpoint=dict(interval=3000))
