# shape_adaptor_r50_faster_rcnn_1x_coco on the synthetic demo data, sized for 2 CPU cores:
# the config's ShapeAdaptorResNet as a half-width ResNet-18 (widths 32-256) from scratch,
# so in the paper's standard mode (AutoTL is for pretrained weights): stem conv at stride 1
# + one stem adaptor, residual adaptors at the official block spread, their count from
# the overall stride 32 (target_stride: 6 adaptors at s = 0.561). limit_dim=16 caps the
# last map at 16 px per side for 256 px images (hard cap, near stride 16). 64 pyramid
# channels, 256 px images, 64 RoIs per image, the 8-epoch demo
# schedule with the alphas stepping every 20 iterations (cosine over the epochs).
_base_ = ['./shape_adaptor_r50_faster_rcnn_1x_coco.py', './_base_/demo_detection.py']

_demo_epochs = {{_base_.demo_max_epochs}}
model = dict(
    backbone=dict(depth=18, base_channels=32, stem_channels=32, frozen_stages=-1,
                  norm_eval=False, mode='standard', count_rule='target_stride',
                  target_stride=32, limit_dim=16, init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256,
                       num_classes=len({{_base_.demo_classes}}))),
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=1000),
                   rcnn=dict(sampler=dict(num=64))))
train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=_demo_epochs, val_interval=_demo_epochs)
param_scheduler = dict(
    _delete_=True,
    model={{_base_.demo_param_scheduler}},
    alpha=[dict(type='CosineAnnealingLR', T_max=_demo_epochs, eta_min=0., begin=0,
                end=_demo_epochs, by_epoch=True)])
optim_wrapper = dict(optimizer=dict(lr=0.02))
default_hooks = dict(logger=dict(interval=10),
                     checkpoint=dict(interval=_demo_epochs, max_keep_ckpts=1))
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=10)]
