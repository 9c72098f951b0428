# deeplabv2_crf_r101_voc12aug on the synthetic demo data: the model of
# deeplabv2_r101_voc12aug_demo (MSC on a half-width Caffe-style ResNet-18 from scratch)
# with the CRF on; 256 px crops, the demo schedule.
# (The real CRF config changes only the segmentor type and its CRF, as here.)
_base_ = './deeplabv2_r101_voc12aug_demo.py'

model = dict(type='CRFMSCEncoderDecoder', crf=dict(preset='deeplabv2_voc'))
