# dla34_centernet_official_coco on the synthetic demo data: the model and schedule of
# dla34_centernet_140e_coco_demo.py with CenterNet's input normalisation.
_base_ = ['./dla34_centernet_140e_coco_demo.py']

model = dict(
    data_preprocessor=dict(mean=[104.01, 114.03, 119.92], std=[73.60, 69.89, 70.91],
                           bgr_to_rgb=False))
