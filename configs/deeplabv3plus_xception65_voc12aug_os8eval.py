# deeplabv3plus_xception65_voc12aug evaluated as the paper (Chen et al., ECCV 2018, Sec.
# 4.3): the checkpoint trained at output stride 16 (ASPP rates 6/12/18) tested at output
# stride 8 with doubled rates 12/24/36. The parameters do not depend on the output
# stride, so the output-stride-16 checkpoint loads strictly. For testing only:
#   python tools/test.py configs/deeplabv3plus_xception65_voc12aug_os8eval.py \
#       work_dirs/deeplabv3plus_xception65_voc12aug/iter_30000.pth [--tta]
# (--tta adds the paper's multi-scale 0.5-1.75 + flip test.) Training with this file
# would train at output stride 8, which the paper does not do.
_base_ = './deeplabv3plus_xception65_voc12aug.py'

model = dict(backbone=dict(output_stride=8), decode_head=dict(dilations=(1, 12, 24, 36)))
