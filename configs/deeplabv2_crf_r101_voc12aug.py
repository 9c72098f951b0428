# deeplabv2_r101_voc12aug with DeepLab's fully connected CRF on every fused multi-scale
# prediction (DeepLab v2's test path): the 'deeplabv2_voc' preset of DenseCRF, the
# settings DeepLab's model page gives for ResNet-101 VOC (10 mean-field iterations; appearance
# 4, xy 67, rgb 3; smoothness 3, xy 1; row-normalised kernels). Training is unchanged
# and the parameter names are the plain segmentor's, so a checkpoint of the plain config
# tests here as is:
#   python tools/test.py configs/deeplabv2_crf_r101_voc12aug.py CKPT
_base_ = './deeplabv2_r101_voc12aug.py'

model = dict(
    type='CRFMSCEncoderDecoder',
    crf=dict(preset='deeplabv2_voc'))
