# DeepLab v3+ on HRNetV2-W18: mmseg's fcn_hr18 Cityscapes 80k recipe (backbone,
# ImageNet weights, data, schedule) with its FCN head replaced by mmseg's
# DepthwiseSeparableASPPHead. The ASPP reads the HRNetV2 representation (the four
# branches resized to stride 4 and concatenated, 270 channels) and the decoder's
# low-level features are the stride-4 branch (18 channels). At stride 4 the atrous
# rates are twice mmseg's stride-8 rates (1, 24, 48, 72), so the branches span the
# same image extent, and the ASPP is 256 wide (the stride-8 recipe's 512 at four
# times the pixels would quadruple its cost).
_base_ = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    decode_head=dict(
        _delete_=True,
        type='DepthwiseSeparableASPPHead',
        in_channels=[18, 36, 72, 144],
        in_index=(0, 1, 2, 3),
        input_transform='resize_concat',
        channels=256,
        dilations=(1, 24, 48, 72),
        c1_in_channels=18,
        c1_channels=48,
        dropout_ratio=0.1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
