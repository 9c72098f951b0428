# HRNetV2-W18 + HRNetV2Head, Cityscapes 512x1024, 80k iterations. mmseg's FCN-HRNet
# recipe (78.65 mIoU reported by mmseg) with its FCNHead(resize_concat) replaced by
# HRNetV2Head; every other setting (backbone, ImageNet weights, SyncBN, data,
# schedule) is inherited unchanged. The head computes the same function with the
# same parameter names, so mmseg's fcn_hr18 checkpoints load into it.
# Ablation: mode='v1' uses only the highest-resolution branch (see docs/hrnetv2.md:
# set the backbone's multiscale_output=False or train with find_unused_parameters).
_base_ = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    decode_head=dict(
        _delete_=True,
        type='HRNetV2Head',
        mode='v2',
        in_channels=[18, 36, 72, 144],
        in_index=(0, 1, 2, 3),
        channels=sum([18, 36, 72, 144]),
        kernel_size=1,
        dropout_ratio=-1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
