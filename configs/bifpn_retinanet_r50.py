# mmdet's RetinaNet R50 1x on COCO with a BiFPN in place of the FPN: C3-C5 plus P6 and P7
# max-pooled from C5, 256 channels like the FPN it replaces, 3 cells (EfficientDet-D0's
# depth), SyncBN in the neck (2 images per GPU are too few for plain BN). Everything else
# is mmdet's config unchanged.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmplug_agg'], allow_failed_imports=False)

model = dict(
    neck=dict(
        _delete_=True,
        type='BiFPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        start_level=1,
        num_outs=5,
        num_repeats=3,
        norm_cfg=dict(type='SyncBN', requires_grad=True, eps=1e-3, momentum=0.01)))
