# deeplabv3plus_xception65_cityscapes_512x1024_80k_os8eval on the synthetic demo data: the
# demo model of deeplabv3plus_xception65_cityscapes_512x1024_80k_demo evaluated at output
# stride 8 with doubled ASPP rates (test a checkpoint of that demo with this file).
_base_ = './deeplabv3plus_xception65_cityscapes_512x1024_80k_demo.py'

model = dict(backbone=dict(output_stride=8), decode_head=dict(dilations=(1, 12, 24, 36)))
