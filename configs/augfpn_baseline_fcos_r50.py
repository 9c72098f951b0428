# Baseline of augfpn_fcos_r50: mmdet's FCOS R50 (caffe, GN head, 1x) with the official
# AugFPN FCOS recipe (configs/fcos_r50_caffe_augfpn_gn_1x_4gpu.py: lr 0.01 at batch 16,
# bias lr x2 without decay, no gradient clipping), so the two differ only in the method.
_base_ = 'mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
optim_wrapper = dict(clip_grad=None)
