# Baseline: mmseg's FCN head on HRNetV2-W18, Cityscapes 512x1024, 80k iterations,
# unchanged (mmseg reports 78.65 mIoU). Every segmentation method of this package
# is compared against this config.
_base_ = 'mmseg::hrnet/fcn_hr18_4xb2-80k_cityscapes-512x1024.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
