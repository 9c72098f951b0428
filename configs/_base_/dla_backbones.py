# DLA backbones shared by the DLA configs; a config inherits this file next to its
# recipe and takes one in with `{{_base_.dla34_backbone}}`.
# ImageNet weights come from timm and are converted on load (the timm:// scheme of
# mmplug_agg; needs timm and a network connection once). Detection freezes the stem
# and the two conv levels (strides 1-2) and keeps BN statistics, as mmdet's ResNet
# configs freeze their stem and keep norm_eval.
dla34_backbone = dict(
    _delete_=True,
    type='DLA',
    arch='dla34',
    out_indices=(2, 3, 4, 5),
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    init_cfg=dict(type='Pretrained', checkpoint='timm://dla34.in1k'))
dla34_channels = [64, 128, 256, 512]
