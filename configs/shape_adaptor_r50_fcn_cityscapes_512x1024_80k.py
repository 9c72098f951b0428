# Shape Adaptor (Liu et al., ECCV 2020) in an FCN R50 on Cityscapes, 512x1024 crops, 80k
# iterations: mmseg's fcn_r50-d8 recipe with the dilated ResNetV1c-50 replaced by
# ShapeAdaptorResNet (same deep stem and ImageNet weights, every stage at stride 1, shape
# adaptors between the residual blocks). The adaptors start at an overall stride of 8
# (target_stride, the recipe's output stride: 2 adaptors, initial factor 0.707 each) and
# learn where and how much to shrink; the heads resize to the labels, so the learned
# sizes are kept (resize_outputs=False). Alphas train with their own SGD group (lr 0.1,
# momentum 0.9, Nesterov, no decay) and the factors are logged every 50 iterations.
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='ShapeAdaptorEncoderDecoder',
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='ShapeAdaptorResNet',
        depth=50,
        deep_stem=True,
        out_indices=(0, 1, 2, 3),
        target_stride=8,
        r1=0.5,
        r2=1.0,
        size_rule='local',
        limit_dim=None,
        resize_outputs=False,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')))
optim_wrapper = dict(
    constructor='ShapeAdaptorOptimWrapperConstructor',
    paramwise_cfg=dict(alpha_cfg=dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.)))
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=50)]
