# AugFPN ablation: consistent supervision only. The neck is FPN that hands out its
# laterals (AugFPN without RFA); RoIs are pooled from one level each, as FPN does.
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    neck=dict(type='AugFPN', with_rfa=False),
    roi_head=dict(type='ConsistentSupervisionRoIHead', aux_loss_weight=0.25,
                  share_aux_head=False))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
