# Baseline of augfpn_retinanet_r50: mmdet's RetinaNet R50-FPN with AugFPN's recipe (gradient
# clipping at 35, as the official FPN baseline), so the two configs differ only in the method.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)
optim_wrapper = dict(clip_grad=dict(max_norm=35, norm_type=2))
