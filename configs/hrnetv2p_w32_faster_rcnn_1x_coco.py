# Faster R-CNN with HRNetV2p-W32, 1x schedule on COCO: mmdet's recipe (40.2 box AP
# reported by mmdet) with its HRFPN neck replaced by HRNetV2pNeck; everything else
# (backbone, ImageNet weights, data, schedule) inherited unchanged. The neck is set
# up as HRFPN computes (average pooling with floor-rounded level sizes, as HRFPN and
# the official HRNet-Object-Detection code: P6 of an 800x1344 input is 12x21, no norm,
# no activation on the level convs) and has HRFPN's parameter names, so mmdet's
# checkpoints predict as in mmdet (tools/model_converters/hrnet2mmplug.py).
# Ablations: pooling_type='MAX', pooling_size='ceil' (P6 13x21, the size stride-2
# convs give), norm_cfg=dict(type='SyncBN') (HRFPN accepts but never applies a
# norm_cfg), act_cfg=dict(type='ReLU').
_base_ = 'mmdet::hrnet/faster-rcnn_hrnetv2p-w32-1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='HRNetV2pNeck',
        in_channels=[32, 64, 128, 256],
        out_channels=256,
        num_outs=5,
        pooling_type='AVG',
        pooling_size='floor',
        norm_cfg=None,
        act_cfg=None,
        with_cp=False))
