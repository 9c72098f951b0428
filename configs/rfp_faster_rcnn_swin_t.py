# DetectoRS's Recursive Feature Pyramid around Swin-T: mmdet's Faster R-CNN 1x (COCO)
# with the Swin-T of mmdet's Mask R-CNN Swin-T config (ImageNet-1k weights, AdamW lr
# 1e-4, weight decay 0.05, no decay on norms and position tables, warm-up and steps
# at epochs 8 and 11). ASPP(P3-P5) (4 x 64 channels) joins the residual stream
# after the first block of Swin stages 2-4 in the second pass (Swin blocks end with
# no activation; see docs/rfp.md).
_base_ = './fpn_faster_rcnn_r50.py'

swin_t_checkpoint = ('https://github.com/SwinTransformer/storage/releases/download/v1.0.0/'
                     'swin_tiny_patch4_window7_224.pth')
model = dict(
    backbone=dict(
        _delete_=True,
        type='RecursiveFeaturePyramid',
        backbone=dict(
            type='SwinTransformer',
            embed_dims=96,
            depths=[2, 2, 6, 2],
            num_heads=[3, 6, 12, 24],
            window_size=7,
            mlp_ratio=4,
            qkv_bias=True,
            qk_scale=None,
            drop_rate=0.,
            attn_drop_rate=0.,
            drop_path_rate=0.2,
            patch_norm=True,
            out_indices=(0, 1, 2, 3),
            with_cp=False,
            convert_weights=True,
            init_cfg=dict(type='Pretrained', checkpoint=swin_t_checkpoint)),
        neck=dict(type='FPN', in_channels=[96, 192, 384, 768], out_channels=256, num_outs=5),
        rfp_steps=2,
        aspp_out_channels=64,
        aspp_dilations=(1, 3, 6, 1)),
    neck=None)

param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
optim_wrapper = dict(
    type='OptimWrapper',
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }),
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, betas=(0.9, 0.999),
                   weight_decay=0.05))
