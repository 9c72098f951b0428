# CenterNet's published DLA-34 detectors, converted with
# tools/model_converters/centernet2mmplug.py (docs/model_zoo.md): ctdet_coco_dla_1x
# (140 epochs, 36.3 COCO val AP) and ctdet_coco_dla_2x (230 epochs, 37.4 AP), both
# without test-time augmentation as CenterNet's MODEL_ZOO.md reports them. This is
# dla34_centernet_140e_coco.py (same model, same test pipeline: mmdet's CenterNet
# centre crop-pad to a multiple of 32 + 1, CenterNet's --keep_res) with CenterNet's
# input normalisation: its COCO mean/std on BGR images (CenterNet reads with OpenCV
# and never swaps channels). For evaluating converted weights; train with
# dla34_centernet_140e_coco.py.
_base_ = './dla34_centernet_140e_coco.py'

model = dict(
    data_preprocessor=dict(
        mean=[104.01, 114.03, 119.92],  # 255 x (0.40790, 0.44719, 0.47026), B, G, R
        std=[73.60, 69.89, 70.91],  # 255 x (0.28864, 0.27408, 0.27810)
        bgr_to_rgb=False),
    # The converted checkpoint holds every weight: no ImageNet download.
    backbone=dict(init_cfg=None))
