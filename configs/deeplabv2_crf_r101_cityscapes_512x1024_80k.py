# deeplabv2_r101_cityscapes_512x1024_80k with DeepLab's fully connected CRF on every
# prediction (validation, test, inference): mean-field inference, 10 iterations, an
# appearance kernel (position + colour) and a smoothness kernel (position), with
# DeepLab's VOC weights and widths. Training is unchanged and the parameter names are
# the plain segmentor's, so a checkpoint trained with the plain config tests here as is:
#   python tools/test.py configs/deeplabv2_crf_r101_cityscapes_512x1024_80k.py CKPT
_base_ = './deeplabv2_r101_cityscapes_512x1024_80k.py'

model = dict(
    type='CRFEncoderDecoder',
    crf=dict(num_iterations=10, appearance_weight=4., appearance_xy_std=67.,
             appearance_rgb_std=3., smoothness_weight=3., smoothness_xy_std=3.))
