# bifpn_retinanet_r50 on the synthetic demo data, sized to train on 2 CPU cores in minutes:
# the demo backbone of _base_/demo_detection.py (half-width ResNet-18 from scratch); plain BN
# in the neck; 64 pyramid channels, 2 BiFPN cells, 2 head convs, 256 px images.
_base_ = ['./bifpn_retinanet_r50.py', './_base_/demo_detection.py']

model = dict(
    backbone={{_base_.demo_backbone}},
    neck=dict(in_channels={{_base_.demo_backbone_channels}}, out_channels=64, num_repeats=2,
              norm_cfg=dict(type='BN', requires_grad=True, eps=1e-3, momentum=0.01)),
    bbox_head=dict(num_classes=4, in_channels=64, feat_channels=64, stacked_convs=2))

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
