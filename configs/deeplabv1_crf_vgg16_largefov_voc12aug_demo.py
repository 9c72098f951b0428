# deeplabv1_crf_vgg16_largefov_voc12aug on the synthetic demo data: the model of
# deeplabv1_vgg16_largefov_voc12aug_demo (VGG-16 with BN from scratch, a 64-channel
# LargeFOV head) with the CRF on; 256 px crops, the demo schedule.
# (The real CRF config changes only the segmentor type and its CRF, as here.)
_base_ = './deeplabv1_vgg16_largefov_voc12aug_demo.py'

model = dict(type='CRFEncoderDecoder', crf=dict(preset='deeplabv1_voc'))
