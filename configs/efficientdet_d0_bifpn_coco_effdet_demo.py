# efficientdet_d0_bifpn_coco_demo with the symmetric padding and backbone BN eps of
# efficientdet_d0_bifpn_coco_effdet.py.
_base_ = './efficientdet_d0_bifpn_coco_demo.py'

model = dict(
    backbone=dict(conv_cfg=None, norm_cfg=dict(type='BN', requires_grad=True, eps=1e-5,
                                               momentum=0.01)),
    neck=dict(pool_padding='symmetric'))
