# PASCAL VOC 2012 + SBD (train_aug, 10,582 images; mmseg's VOC datasets) as DeepLab v1
# and v2 train and test on it (their released prototxts): 321x321 random crops, padded
# with the mean colour (the data preprocessor pads after normalisation) and label 255,
# random mirror; v2 also rescales each image by a random factor in [0.5, 1.5] (v1 does
# not rescale). No photometric distortion. Testing on the whole image at its own size
# (DeepLab pads to 513x513; mmseg needs no padding). A config takes the training set with
#   train_dataloader = dict(batch_size=N, dataset=dict(datasets={{_base_.deeplabv1_voc12aug}}))
_base_ = 'mmseg::_base_/datasets/pascal_voc12_aug.py'

deeplab_voc_crop_size = (321, 321)
_v1_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=deeplab_voc_crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
# VOC images are at most 500 px on the longer side: a 500x500 target with keep_ratio
# scales such images by the drawn ratio, as DeepLab scales the image itself.
_v2_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(500, 500), ratio_range=(0.5, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=deeplab_voc_crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
_voc_train = dict(
    type='PascalVOCDataset',
    data_root='data/VOCdevkit/VOC2012',
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
    ann_file='ImageSets/Segmentation/train.txt')
_voc_aug = dict(
    type='PascalVOCDataset',
    data_root='data/VOCdevkit/VOC2012',
    data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
    ann_file='ImageSets/Segmentation/aug.txt')
deeplabv1_voc12aug = [
    dict(_voc_train, pipeline=_v1_train_pipeline),
    dict(_voc_aug, pipeline=_v1_train_pipeline)
]
deeplabv2_voc12aug = [
    dict(_voc_train, pipeline=_v2_train_pipeline),
    dict(_voc_aug, pipeline=_v2_train_pipeline)
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
