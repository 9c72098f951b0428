# shape_adaptor_r50_fcn_cityscapes_512x1024_80k on the synthetic demo data, sized for 2
# CPU cores: the config's ShapeAdaptorResNet as a half-width ResNet-18 (deep stem, widths
# 32-256) from scratch with BN, so in the paper's standard mode (AutoTL is for pretrained
# weights): stem conv at stride 1 + one stem adaptor, then residual adaptors at the
# official block spread, their count from the FCN's output stride 8 (target_stride: 4
# adaptors at s = 0.595). limit_dim=48 caps the final map at 48 px per side (hard cap:
# the factors are rescaled in the forward pass once it would be larger). A 64-channel
# FCN head, 256 px crops, the 600-iteration demo
# schedule (poly) with the alphas stepping every 20 (cosine over the run).
_base_ = ['./shape_adaptor_r50_fcn_cityscapes_512x1024_80k.py', './_base_/demo_segmentation.py']

_demo_norm_cfg = dict(type='BN', requires_grad=True)
_demo_iters = {{_base_.demo_max_iters}}
model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(depth=18, stem_channels=32, base_channels=32, mode='standard',
                  count_rule='target_stride', target_stride=8, limit_dim=48,
                  norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=256, channels=64, norm_cfg=_demo_norm_cfg,
                     num_classes=len({{_base_.demo_seg_classes}})),
    auxiliary_head=dict(in_channels=128, channels=32, norm_cfg=_demo_norm_cfg,
                        num_classes=len({{_base_.demo_seg_classes}})))
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = dict(type='IterBasedTrainLoop', max_iters=_demo_iters, val_interval=_demo_iters)
param_scheduler = dict(
    _delete_=True,
    model=[dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=_demo_iters,
                by_epoch=False)],
    alpha=[dict(type='CosineAnnealingLR', T_max=_demo_iters, eta_min=0., begin=0,
                end=_demo_iters, by_epoch=False)])
optim_wrapper = dict(alpha_step=20)
default_hooks = dict(logger=dict(interval=20),
                     checkpoint=dict(interval=_demo_iters, max_keep_ckpts=1))
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=10)]
