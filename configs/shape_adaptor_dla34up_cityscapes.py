# Shape Adaptor (Liu et al., ECCV 2020) in DLA-34 + DLA-Up on Cityscapes: the
# dla34up_cityscapes_512x1024_80k recipe with DLA-34 replaced by ShapeAdaptorDLA (same
# timm weights, every level at stride 1, one shape adaptor before each of levels 1-5,
# initial factors 0.574 that multiply to stride 16). The learned sizes are kept
# (resize_outputs=False), so DLA-Up merges its levels with bilinear resizes instead of
# the fixed x2 deconvolutions. Alphas train with their own SGD group (lr 0.1, momentum
# 0.9, Nesterov, no decay).
_base_ = './dla34up_cityscapes_512x1024_80k.py'

model = dict(
    type='ShapeAdaptorEncoderDecoder',
    backbone=dict(
        type='ShapeAdaptorDLA',
        target_stride=16,
        r1=0.5,
        r2=1.0,
        size_rule='local',
        limit_dim=None,
        resize_outputs=False),
    decode_head=dict(upsample_mode='bilinear'))
optim_wrapper = dict(
    constructor='ShapeAdaptorOptimWrapperConstructor',
    paramwise_cfg=dict(alpha_cfg=dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)))
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=50)]
