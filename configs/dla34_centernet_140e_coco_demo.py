# dla34_centernet_140e_coco on the synthetic demo data, sized for 2 CPU cores: the
# half-width DLA-34 from scratch (demo_dla_backbone in _base_/demo_detection.py), plain
# 3x3 convs in the DLA-Up neck (mmcv's deformable conv is ~10x slower on the CPU; the
# neck's tests cover DCNv2), 64-channel heads, 256 px images (no crop-pad training
# augmentation) and the short demo schedule.
_base_ = ['./dla34_centernet_140e_coco.py', './_base_/demo_detection.py']

model = dict(
    backbone={{_base_.demo_dla_backbone}},
    neck=dict(in_channels={{_base_.demo_backbone_channels}}, conv_cfg=None),
    bbox_head=dict(in_channels=32, feat_channels=64, num_classes=4))

train_dataloader = {{_base_.demo_centernet_train_dataloader}}
val_dataloader = {{_base_.demo_centernet_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.demo_val_evaluator}}
test_evaluator = val_evaluator
train_cfg = {{_base_.demo_train_cfg}}
param_scheduler = {{_base_.demo_param_scheduler}}
optim_wrapper = {{_base_.demo_optim_wrapper}}
default_hooks = {{_base_.demo_default_hooks}}
