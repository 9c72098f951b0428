# AugFPN ablation: consistent supervision only. The neck is FPN that hands out its
# laterals (AugFPN without RFA); RoIs are pooled from one level each, as FPN does.
# Every ablation samples RoIAlign as the full AugFPN config (2x2 per bin), so the
# three differ only by their component.
_base_ = './fpn_faster_rcnn_r50.py'

model = dict(
    neck=dict(type='AugFPN', with_rfa=False),
    roi_head=dict(type='ConsistentSupervisionRoIHead', aux_loss_weight=0.25,
                  share_aux_head=False,
                  bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
