# efficientdet_d3_bifpn_coco on the synthetic demo data, sized to train on 2 CPU cores in
# minutes: the same EfficientNet-B3 backbone, but trained from scratch (no download),
# plain BN instead of SyncBN, a 64-channel BiFPN with 2 cells instead of 160 channels and
# 6 cells, 2 head convs of 64 channels instead of 4 of 160, no stochastic depth,
# 256 px images padded to 256x256 instead of 896 px, and no EMA (a 0.9998 decay barely
# moves in a few hundred steps).
_base_ = ['./efficientdet_d3_bifpn_coco.py', './_base_/demo_detection.py']

demo_norm_cfg = dict(type='BN', requires_grad=True, eps=1e-3, momentum=0.01)
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=128,
        batch_augments=[dict(type='BatchFixedSizePad', size=(256, 256))]),
    backbone=dict(
        drop_path_rate=0.0,
        norm_cfg=demo_norm_cfg,
        init_cfg=[dict(type='Kaiming', layer='Conv2d'),
                  dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)]),
    neck=dict(out_channels=64, num_repeats=2, norm_cfg=demo_norm_cfg),
    bbox_head=dict(num_classes=4, in_channels=64, feat_channels=64, stacked_convs=2,
                   norm_cfg=demo_norm_cfg))
custom_hooks = []

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
