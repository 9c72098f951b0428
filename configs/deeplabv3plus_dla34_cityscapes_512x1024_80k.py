# DeepLab v3+ on DLA-34 (ImageNet weights from timm) at output stride 8: the last two
# trees keep stride 8 and dilate (2 and 4) instead; mmseg's DepthwiseSeparableASPPHead
# reads level5 (512 channels) and takes its low-level features from level2 (stride 4,
# 64 channels); the auxiliary FCN head reads level4 (256 channels). Everything else is
# mmseg's deeplabv3plus_r50-d8 Cityscapes 80k recipe.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='DLA',
        arch='dla34',
        output_stride=8,
        out_indices=(2, 4, 5),
        norm_cfg=norm_cfg,
        init_cfg=dict(type='Pretrained', checkpoint='timm://dla34.in1k')),
    decode_head=dict(in_channels=512, in_index=2, c1_in_channels=64),
    auxiliary_head=dict(in_channels=256, in_index=1))
