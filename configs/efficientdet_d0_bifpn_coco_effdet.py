# efficientdet_d0_bifpn_coco in the layout of effdet's own PyTorch training,
# effdet's efficientdet_d0 checkpoint (tools/model_converters/effdet2mmplug.py): unlike the
# TensorFlow ports it pads symmetrically (backbone convs and BiFPN max-pools), its backbone
# is timm's efficientnet_b0 (BN eps 1e-5) and trains with drop-path 0.1 (effdet's
# backbone_args). Everything else, including the evaluation, is efficientdet_d0_bifpn_coco's.
_base_ = './efficientdet_d0_bifpn_coco.py'

model = dict(
    backbone=dict(
        conv_cfg=None,
        drop_path_rate=0.1,
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-5, momentum=0.01)),
    neck=dict(pool_padding='symmetric'))
