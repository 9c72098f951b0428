# shape_adaptor_dla34up_cityscapes on the synthetic demo data, sized for 2 CPU cores: the
# config's ShapeAdaptorDLA at half width (levels 1-5 of 16-256 channels) from scratch, BN,
# so in the standard mode (AutoTL is for pretrained weights): one adaptor before each of
# levels 1-5 (the target-stride count for stride 16, capped at the 5 slots), initial
# factors 0.574 that multiply to 1/16. 256 px crops, the 600-iteration demo schedule
# with the alphas stepping every 20 (cosine over the run).
_base_ = ['./shape_adaptor_dla34up_cityscapes.py', './_base_/demo_segmentation.py']

_demo_norm_cfg = dict(type='BN', requires_grad=True)
_demo_iters = {{_base_.demo_max_iters}}
model = dict(
    data_preprocessor={{_base_.demo_data_preprocessor}},
    backbone=dict(channels=(8, 16, 32, 64, 128, 256), mode='standard', target_stride=16,
                  norm_cfg=_demo_norm_cfg, init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128, 256], norm_cfg=_demo_norm_cfg,
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
