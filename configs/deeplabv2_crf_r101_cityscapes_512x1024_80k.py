# deeplabv2_r101_cityscapes_512x1024_80k with DeepLab's fully connected CRF on every
# prediction (validation, test, inference): mean-field inference, 10 iterations, an
# appearance kernel (position + colour) and a smoothness kernel (position). DeepLab
# released CRF settings for VOC only (the paper cross-validated them per data set); this
# takes the 'deeplabv2_voc' preset of DenseCRF, DeepLab's ResNet-101 VOC settings
# (appearance 4, xy 67, rgb 3; smoothness 3, xy 1; row-normalised kernels).
# Training is unchanged and the parameter names are the plain segmentor's, so a
# checkpoint trained with the plain config tests here as is:
#   python tools/test.py configs/deeplabv2_crf_r101_cityscapes_512x1024_80k.py CKPT
_base_ = './deeplabv2_r101_cityscapes_512x1024_80k.py'

model = dict(
    type='CRFEncoderDecoder',
    crf=dict(preset='deeplabv2_voc'))
