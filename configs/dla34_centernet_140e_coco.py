# CenterNet ("Objects as Points", Zhou et al. 2019) with its DLA-34 detector: DLA-34
# (ImageNet weights from timm) and the DLA-Up neck in CenterNet's form (nodes sum
# instead of concatenating, 3x3 deformable convs (DCNv2) for projections and nodes,
# one more IDA-Up to a single stride-4 map of 64 channels), heads with 256 hidden
# channels (CenterNet's head_conv for DLA). Data, augmentation and the 140-epoch
# schedule are mmdet's CenterNet recipe (RepeatDataset x5 for 28 epochs, SGD), unchanged.
# Expected: 36.3 COCO val AP without test-time augmentation, CenterNet's own DLA-34 at
# 140 epochs (ctdet_coco_dla_1x, CenterNet's MODEL_ZOO.md; trained with Adam 5e-4,
# not mmdet's SGD recipe used here); 37.4 AP is its 230-epoch (2x) model. Converted
# CenterNet checkpoints: dla34_centernet_official_coco.py (docs/model_zoo.md).
_base_ = 'mmdet::centernet/centernet_r18-dcnv2_8xb16-crop512-140e_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DLA',
        arch='dla34',
        out_indices=(2, 3, 4, 5),
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint='timm://dla34.in1k')),
    neck=dict(
        _delete_=True,
        type='DLAUpNeck',
        in_channels=[64, 128, 256, 512],
        out_mode='single',
        node_type='sum',
        projection_kernel_size=3,
        conv_cfg=dict(type='DCNv2', deform_groups=1)),
    bbox_head=dict(in_channels=64, feat_channels=256))
