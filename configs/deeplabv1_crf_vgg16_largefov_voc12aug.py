# deeplabv1_vgg16_largefov_voc12aug with DeepLab's fully connected CRF on every prediction
# (DeepLab-CRF-LargeFOV): the 'deeplabv1_voc' preset of DenseCRF, the settings DeepLab's
# model page gives for v1 LargeFOV's VOC test (10 mean-field iterations; appearance 4, xy
# 121, rgb 5; smoothness 3, xy 3; row-normalised kernels as DeepLab's CRF code). Training
# is unchanged and the parameter names are the plain segmentor's, so a checkpoint of the
# plain config tests here as is:
#   python tools/test.py configs/deeplabv1_crf_vgg16_largefov_voc12aug.py CKPT
_base_ = './deeplabv1_vgg16_largefov_voc12aug.py'

model = dict(
    type='CRFEncoderDecoder',
    crf=dict(preset='deeplabv1_voc'))
