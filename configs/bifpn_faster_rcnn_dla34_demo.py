# bifpn_faster_rcnn_dla34 on the synthetic demo data, sized like
# bifpn_faster_rcnn_r50_demo.py with the demo DLA-34 (half width, from scratch; see
# demo_dla_backbone in _base_/demo_detection.py): 64 channels, 2 BiFPN cells, plain BN.
_base_ = ['./bifpn_faster_rcnn_dla34.py', './_base_/demo_detection.py']

model = dict(
    backbone={{_base_.demo_dla_backbone}},
    neck=dict(in_channels={{_base_.demo_backbone_channels}}, out_channels=64, num_repeats=2,
              norm_cfg=dict(type='BN', requires_grad=True, eps=1e-3, momentum=0.01)),
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=4)),
    train_cfg=dict(rcnn=dict(sampler=dict(num=64))))

train_dataloader = {{_base_.demo_train_dataloader}}
val_dataloader = {{_base_.demo_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
