# Shape Adaptor (Liu et al., ECCV 2020) in DLA-34 + DLA-Up on Cityscapes: the
# dla34up_cityscapes_512x1024_80k recipe with DLA-34 replaced by ShapeAdaptorDLA in
# AutoTL mode, because it loads ImageNet weights (timm): every level runs at stride 1 and
# one max-pool vs identity adaptor sits before each of levels 1-5, i.e. exactly at DLA's
# original strided points, starting at s = 0.55 (alpha -2.19). DLA's trees have no single
# strided shortcut, so the paper's residual form has no counterpart here (see
# docs/shape_adaptor.md). The learned sizes are kept (resize_outputs=False), so DLA-Up
# merges its levels with bilinear resizes instead of the fixed x2 deconvolutions. Alphas
# follow the official alternating schedule (own SGD lr 0.1, momentum 0.9, Nesterov, no
# decay, cosine over the run, a step every 20 iterations).
_base_ = './dla34up_cityscapes_512x1024_80k.py'

model = dict(
    type='ShapeAdaptorEncoderDecoder',
    backbone=dict(
        type='ShapeAdaptorDLA',
        adaptor_type='pool',
        mode='autotl',
        r1=0.5,
        r2=1.0,
        size_rule='local',
        limit_dim=None,
        resize_outputs=False),
    decode_head=dict(upsample_mode='bilinear'))
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
