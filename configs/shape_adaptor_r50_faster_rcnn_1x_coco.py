# Shape Adaptor (Liu et al., ECCV 2020) in Faster R-CNN R50-FPN, 1x schedule on COCO:
# mmdet's recipe with the ResNet-50 replaced by the paper's ShapeAdaptorResNet in AutoTL
# mode, because it loads ImageNet weights: stem conv at stride 1 and two max-pool vs
# identity adaptors (the stem conv's and the max-pool's strides), and the first block
# of stages 2-4 as residual shape adaptors (strided 1x1 shortcut vs weight layers at
# stride 1); all five start at s = 0.55 (alpha -2.19). Anchors and the RoI extractor
# assume strides 4-32, so every level is resized to its nominal ceil(input / stride)
# size (resize_outputs=True). Alphas follow the official alternating schedule: their
# own SGD (lr 0.1, momentum 0.9, Nesterov, no decay, cosine over the 12 epochs) steps
# every 20 iterations (the official AutoTL step) from a pass of its own; the weights
# step every iteration from a fresh pass.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    type='ShapeAdaptorFasterRCNN',
    backbone=dict(
        type='ShapeAdaptorResNet',
        adaptor_type='residual',
        mode='autotl',
        r1=0.5,
        r2=1.0,
        limit_dim=None,
        resize_outputs=True))
optim_wrapper = dict(
    constructor='ShapeAdaptorOptimWrapperConstructor',
    alpha_schedule='alternate',
    alpha_step=20,
    alpha_optimizer=dict(type='SGD', lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.))
param_scheduler = dict(
    _delete_=True,
    model={{_base_.param_scheduler}},
    alpha=[dict(type='CosineAnnealingLR', T_max=12, eta_min=0., begin=0, end=12,
                by_epoch=True)])
model_wrapper_cfg = dict(type='ShapeAdaptorDistributedDataParallel',
                         find_unused_parameters=False)
custom_hooks = [dict(type='ShapeAdaptorLoggerHook', interval=50)]
