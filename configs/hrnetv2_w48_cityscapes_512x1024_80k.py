# HRNetV2-W48 + HRNetV2Head, Cityscapes 512x1024, 80k iterations. mmseg's FCN-HRNet
# W48 recipe (79.93 mIoU reported by mmseg) with its FCNHead(resize_concat) replaced
# by HRNetV2Head; everything else inherited unchanged (see the W18 config).
_base_ = 'mmseg::hrnet/fcn_hr48_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    decode_head=dict(
        _delete_=True,
        type='HRNetV2Head',
        mode='v2',
        in_channels=[48, 96, 192, 384],
        in_index=(0, 1, 2, 3),
        channels=sum([48, 96, 192, 384]),
        kernel_size=1,
        dropout_ratio=-1,
        num_classes=19,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)))
