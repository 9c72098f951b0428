# Shape Adaptor (Liu et al., ECCV 2020) in an FCN R50 on Cityscapes, 512x1024 crops, 80k
# iterations: mmseg's fcn_r50-d8 recipe with the dilated ResNetV1c-50 replaced by the
# paper's ShapeAdaptorResNet in AutoTL mode, because it loads ImageNet weights: the deep
# stem runs at stride 1 and is followed by two max-pool vs identity adaptors (for the
# stem's stride-2 conv and its max-pool), and the first block of stages 2-4 becomes a
# residual shape adaptor (its strided 1x1 shortcut vs its weight layers at stride 1,
# 2(1-s) G(shortcut) + 2s G(weights), then ReLU). All five start at s = 0.55 (alpha
# -2.19), near the ImageNet network's strides, and learn where and how much to shrink;
# the heads resize to the labels, so the learned sizes are kept (resize_outputs=False).
# Alphas follow the official alternating schedule: their own SGD (lr 0.1, momentum 0.9,
# Nesterov, no decay, cosine over the run) steps every 20 iterations (the official
# AutoTL step) from a pass of its own; the weights step every iteration.
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
        adaptor_type='residual',
        mode='autotl',
        r1=0.5,
        r2=1.0,
        limit_dim=None,
        resize_outputs=False,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnet50_v1c')))
optim_wrapper = dict(
    constructor='ShapeAdaptorOptimWrapperConstructor',
    alpha_schedule='alternate',
    alpha_step=20,
    alpha_optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.))
param_scheduler = dict(
    _delete_=True,
    model={{_base_.param_scheduler}},
    alpha=[dict(type='CosineAnnealingLR', T_max=80000, eta_min=0., begin=0, end=80000,
                by_epoch=False)])
model_wrapper_cfg = dict(type='ShapeAdaptorDistributedDataParallel',
                         find_unused_parameters=False)
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=50)]
