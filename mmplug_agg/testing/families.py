"""Model families of the shipped configs: which configs share an architecture.

Checks that would take too long for every config (ONNX export, a CUDA AMP step)
run one demo config per family. A family groups the configs whose models are
built from the same modules in the same arrangement (they differ in widths,
depth, dataset, schedule, loss weights, post-processing or data
preprocessing); its representative is the demo variant of one of them.
``tests/deployment/test_export_configs.py`` checks that every config in
``configs/`` belongs to exactly one family, so a new config must be placed here.
"""
from typing import Dict, List

from mmplug_agg.testing.cli import CONFIG_DIR

# family -> (representative demo config, the configs of the family)
FAMILIES: Dict[str, tuple] = {
    'fpn_faster_rcnn': ('fpn_faster_rcnn_r50_demo', [
        'fpn_faster_rcnn_r50', 'augfpn_baseline_faster_rcnn_r50',
        'dla34_faster_rcnn_fpn_1x_coco']),
    'fpn_soft_roi_faster_rcnn': ('augfpn_srs_faster_rcnn_r50_demo', [
        'augfpn_srs_faster_rcnn_r50']),
    'augfpn_faster_rcnn': ('augfpn_faster_rcnn_r50_demo', [
        'augfpn_faster_rcnn_r50', 'augfpn_cs_faster_rcnn_r50', 'augfpn_rfa_faster_rcnn_r50',
        'augfpn_rpn_aux_faster_rcnn_r50']),
    'augfpn_mask_rcnn': ('augfpn_mask_rcnn_r50_demo', [
        'augfpn_mask_rcnn_r50', 'augfpn_baseline_mask_rcnn_r50']),
    'fcos': ('augfpn_fcos_r50_demo', ['augfpn_fcos_r50', 'augfpn_baseline_fcos_r50']),
    'retinanet': ('augfpn_retinanet_r50_demo', [
        'augfpn_retinanet_r50', 'augfpn_baseline_retinanet_r50', 'bifpn_retinanet_r50']),
    'panet': ('panet_mask_rcnn_r50_demo', ['panet_faster_rcnn_r50', 'panet_mask_rcnn_r50']),
    'bifpn_faster_rcnn': ('bifpn_faster_rcnn_dla34_demo', [
        'bifpn_faster_rcnn_dla34', 'bifpn_faster_rcnn_r50']),
    'efficientdet': ('efficientdet_d0_bifpn_coco_demo', [
        'efficientdet_d0_bifpn_coco', 'efficientdet_d0_bifpn_coco_effdet',
        'efficientdet_d0_bifpn_coco_hardnms', 'efficientdet_d1_bifpn_coco',
        'efficientdet_d1_bifpn_coco_effdet', 'efficientdet_d2_bifpn_coco',
        'efficientdet_d3_bifpn_coco', 'efficientdet_d4_bifpn_coco',
        'efficientdet_d5_bifpn_coco', 'efficientdet_d6_bifpn_coco',
        'efficientdet_d7_bifpn_coco', 'efficientdet_d7x_bifpn_coco']),
    'hrnetv2p_faster_rcnn': ('hrnetv2p_w32_faster_rcnn_1x_coco_demo', [
        'hrnetv2p_w32_faster_rcnn_1x_coco']),
    'rfp': ('rfp_cascade_rcnn_r50_demo', [
        'rfp_cascade_rcnn_r50', 'rfp_faster_rcnn_r50', 'rfp_faster_rcnn_dla34',
        'rfp_retinanet_r50']),
    'rfp_swin': ('rfp_faster_rcnn_swin_t_demo', ['rfp_faster_rcnn_swin_t']),
    'detectors': ('detectors_cascade_rcnn_r50_demo', ['detectors_cascade_rcnn_r50']),
    'centernet': ('dla34_centernet_140e_coco_demo', [
        'dla34_centernet_140e_coco', 'dla34_centernet_official_coco']),
    'shape_adaptor_faster_rcnn': ('shape_adaptor_r50_faster_rcnn_1x_coco_demo', [
        'shape_adaptor_r50_faster_rcnn_1x_coco']),
    'hrnetv2_seg': ('hrnetv2_w18_cityscapes_512x1024_80k_demo', [
        'hrnetv2_w18_cityscapes_512x1024_80k', 'hrnetv2_w48_cityscapes_512x1024_80k',
        'fcn_hrnet_w18_cityscapes_512x1024_80k']),
    'deeplabv3plus_hrnetv2': ('deeplabv3plus_hrnetv2_w18_cityscapes_512x1024_80k_demo', [
        'deeplabv3plus_hrnetv2_w18_cityscapes_512x1024_80k']),
    'deeplabv1': ('deeplabv1_crf_vgg16_largefov_voc12aug_demo', [
        'deeplabv1_vgg16_largefov_voc12aug', 'deeplabv1_crf_vgg16_largefov_voc12aug']),
    'deeplabv2': ('deeplabv2_crf_r101_cityscapes_512x1024_80k_demo', [
        'deeplabv2_r101_cityscapes_512x1024_80k', 'deeplabv2_r101_voc12aug',
        'deeplabv2_crf_r101_cityscapes_512x1024_80k', 'deeplabv2_crf_r101_voc12aug']),
    'deeplabv3plus_xception': ('deeplabv3plus_xception65_cityscapes_512x1024_80k_demo', [
        'deeplabv3plus_xception65_cityscapes_512x1024_80k', 'deeplabv3plus_xception65_voc12aug',
        'deeplabv3plus_xception65_cityscapes_512x1024_80k_os8eval',
        'deeplabv3plus_xception65_voc12aug_os8eval']),
    'deeplabv3plus_dla': ('deeplabv3plus_dla34_cityscapes_512x1024_80k_demo', [
        'deeplabv3plus_dla34_cityscapes_512x1024_80k']),
    'dlaup_seg': ('dla34up_cityscapes_512x1024_80k_demo', [
        'dla34up_cityscapes_512x1024_80k', 'dla102up_cityscapes_832_poly']),
    'shape_adaptor_seg': ('shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo', [
        'shape_adaptor_r50_fcn_cityscapes_512x1024_80k']),
    'shape_adaptor_dlaup_seg': ('shape_adaptor_dla34up_cityscapes_demo', [
        'shape_adaptor_dla34up_cityscapes']),
}


def shipped_configs() -> List[str]:
    """The stems of every non-demo config in ``configs/``."""
    return sorted(p.stem for p in CONFIG_DIR.glob('*.py') if not p.stem.endswith('_demo'))


def family_of(config: str) -> str:
    """The family of a config stem (demo or not); ``KeyError`` if it has none."""
    stem = config[:-len('_demo')] if config.endswith('_demo') else config
    for name, (_, members) in FAMILIES.items():
        if stem in members:
            return name
    raise KeyError(f'config {config!r} belongs to no family of mmplug_agg.testing.families')


def representatives() -> Dict[str, str]:
    """family -> its representative demo config stem."""
    return {name: demo for name, (demo, _) in FAMILIES.items()}
