# AugFPN FCOS R50 (caffe, GN head), COCO 1x (paper, test-dev: 37.0 -> 37.9 box AP over
# FPN), as the official recipe (configs/fcos_r50_caffe_augfpn_gn_1x_4gpu.py of
# Gus-Guo/AugFPN): residual feature augmentation, its global context added to P6 (and so
# P7; P6 is made from P5 with a ReLU before the P7 conv), and the official one-stage
# consistent supervision on M3-M5 (_base_/augfpn_one_stage.py). lr 0.01 at batch 16, bias
# lr x2 without decay, no gradient clipping. Baseline: augfpn_baseline_fcos_r50.py.
_base_ = ['mmdet::fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', './_base_/augfpn_one_stage.py']

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
model = dict(
    type='ConsistentSupervisionSingleStageDetector',
    neck=dict(type='AugFPN', pool_ratios=(0.1, 0.2, 0.3), rfa_to_extra_levels=True),
    aux_head={{_base_.aux_head}})

optim_wrapper = dict(clip_grad=None)
