"""``torch.compile`` sees every module family of the package as one graph (no graph breaks).

``torch._dynamo.explain`` traces a forward the way ``torch.compile`` does, without
compiling kernels, and counts the graph breaks: Python that dynamo cannot put in
the graph (host syncs such as ``.item()``/``.tolist()``, data-dependent control
flow, calls into C extensions). Each break splits the compiled model and costs a
device sync on GPU. Modules are small and inputs 64x96 (odd strides included), in
training and in eval mode.

Every module class of the package is here, or its family's base (ShapeAdaptorResNeXt
runs ShapeAdaptorResNet's forward); segmentors and detectors add toolbox glue around
them (mmdet/mmseg's own code, not checked here). Documented exceptions (see
docs/get_started.md, "Training and errors"):

* a *learnable* Shape Adaptor reads its alphas on the host once per forward to
  plan output sizes (``Tensor.tolist()``): one break; the frozen adaptor, what
  ``tools/misc/export_shape_adaptor.py`` writes, has none;
* mmcv's RoIAlign kernel is a pybind11 function dynamo cannot trace (one break per
  pyramid level but the first); ``roi_layer=dict(type='RoIAlign', ..., use_torchvision=True)``
  selects torchvision's registered op, the same computation, and SoftRoIExtractor
  then has no break; on CPU tensors the extractors' default (``pooling_impl='auto'``)
  computes RoIAlign as row gathers in plain torch ops, which have none either;
* the dense CRF (``DenseCRF``, post-processing in eval mode only) builds its
  permutohedral lattice with data-dependent sizes (``unique_consecutive``, sparse CSR
  matrices):
  29 breaks (``Tensor.item()``) on a 16x20 image; it is not meant to be compiled and
  is left out.
"""
import pytest
import torch
from mmengine.registry import DefaultScope
import torch._dynamo

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import (DLA, VGG16, AlignedXception, RecursiveFeaturePyramid,
                                         ShapeAdaptorDLA, ShapeAdaptorResNet)
from mmplug_agg.models.decode_heads import DeepLabV2Head, DLAUpHead, HRNetV2Head, LargeFOVHead
from mmplug_agg.models.layers import DetectoRSASPP, DLAUp, IDAUp
from mmplug_agg.models.necks import AugFPN, BiFPN, DLAUpNeck, HRNetV2pNeck
from mmplug_agg.models.roi_heads import (AdaptiveFeaturePoolingBBoxHead,
                                         AdaptiveFeaturePoolingMaskHead, AllLevelRoIExtractor,
                                         SoftRoIExtractor)
from mmplug_agg.registry import MODEL_REGISTRIES

WIDTHS = [8, 16, 32, 64]
IMAGE = (64, 96)
TINY_SHAPE_ADAPTOR_RESNET = dict(depth=18, base_channels=4, stem_channels=4, init_cfg=None)


def pyramid(widths=WIDTHS, batch=2):
    """Maps at strides 4..32 of a 64x96 image."""
    return [torch.rand(batch, c, -(-IMAGE[0] // s), -(-IMAGE[1] // s))
            for c, s in zip(widths, (4, 8, 16, 32))]


def image(batch=2):
    return torch.rand(batch, 3, *IMAGE)


def rois():
    return torch.tensor([[0, 1., 1., 30., 40.], [1, 5., 5., 90., 60.], [0, 0., 0., 8., 8.]])


def roi_layer(**kwargs):
    return dict(type='RoIAlign', output_size=7, sampling_ratio=2, **kwargs)


def frozen_shape_adaptor_resnet():
    learned = ShapeAdaptorResNet(**TINY_SHAPE_ADAPTOR_RESNET)
    return ShapeAdaptorResNet(**TINY_SHAPE_ADAPTOR_RESNET,
                              frozen_factors=[0.7] * len(learned.adaptors))


def frozen_shape_adaptor_dla():
    channels = (4, 4, 8, 8, 16, 16)
    learned = ShapeAdaptorDLA(arch='dla34', channels=channels, init_cfg=None)
    return ShapeAdaptorDLA(arch='dla34', channels=channels, init_cfg=None,
                           frozen_factors=[0.7] * len(learned.adaptors))


def det_module(cfg):
    # Registry.build follows the default scope, which an earlier test may have left at mmseg.
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODEL_REGISTRIES['mmdet'].build(cfg)


def consistent_supervision_head(head_type):
    return det_module(dict(
        type=head_type, num_classes=3 if 'Retina' in head_type else 1, in_channels=16,
        feat_channels=16,
        **(dict(stacked_convs=1) if 'Retina' in head_type else {}),
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=1,
                              ratios=[1.0], strides=[4, 8, 16, 32, 64])
        if 'Retina' in head_type else dict(type='AnchorGenerator', scales=[8], ratios=[1.0],
                                           strides=[4, 8, 16, 32, 64])))


def five_levels(channels=16):
    return [torch.rand(2, channels, -(-IMAGE[0] // s), -(-IMAGE[1] // s))
            for s in (4, 8, 16, 32, 64)]


def efficientdet_head():
    # Registry.build follows the default scope, which an earlier test may have left at mmseg.
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODEL_REGISTRIES['mmdet'].build(
            dict(type='EfficientDetSepBNHead', num_classes=3, num_ins=5, in_channels=16,
                 feat_channels=16, stacked_convs=2,
                 anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                       scales_per_octave=3, ratios=[1.0, 0.5, 2.0],
                                       strides=[8, 16, 32, 64, 128])))


# family -> (module factory, its forward's arguments)
MODULES = {
    'DLA': lambda: (DLA('dla34', channels=(4, 4, 8, 8, 16, 16)), (image(), )),
    'DLAUpNeck': lambda: (DLAUpNeck(WIDTHS), (pyramid(), )),
    'IDAUp': lambda: (IDAUp(8, WIDTHS[:3], [1, 2, 4]), (pyramid()[:3], )),
    'HRNetV2Head': lambda: (HRNetV2Head(in_channels=WIDTHS, channels=sum(WIDTHS),
                                        num_classes=3, in_index=(0, 1, 2, 3)), (pyramid(), )),
    'HRNetV2pNeck': lambda: (HRNetV2pNeck(WIDTHS, 16), (pyramid(), )),
    'AugFPN': lambda: (AugFPN(WIDTHS, 16, num_outs=5), (pyramid(), )),
    'SoftRoIExtractor': lambda: (SoftRoIExtractor(roi_layer(use_torchvision=True), 8,
                                                  [4, 8, 16, 32]), (pyramid([8] * 4), rois())),
    # the default on CPU tensors: RoIAlign as row gathers (roi_align_levels)
    'SoftRoIExtractor-gather': lambda: (SoftRoIExtractor(roi_layer(), 8, [4, 8, 16, 32],
                                                         pooling_impl='gather'),
                                        (pyramid([8] * 4), rois())),
    'RecursiveFeaturePyramid': lambda: (RecursiveFeaturePyramid(
        dict(type='ResNet', depth=18, base_channels=8),
        dict(type='FPN', in_channels=WIDTHS, out_channels=16, num_outs=5),
        aspp_out_channels=4), (image(), )),
    'BiFPN': lambda: (BiFPN(WIDTHS, 16, num_outs=5, num_repeats=1), (pyramid(), )),
    'EfficientDetSepBNHead': lambda: (efficientdet_head(),
                                      ([torch.rand(2, 16, s, s) for s in (16, 8, 4, 2, 1)], )),
    'DetectoRSASPP': lambda: (DetectoRSASPP(16, 4), (torch.rand(2, 16, 8, 12), )),
    'DeepLabV2Head': lambda: (DeepLabV2Head(in_channels=16, num_classes=3, dilations=(1, 3)),
                              ([torch.rand(2, 16, 8, 12)], )),
    'ShapeAdaptorResNet (frozen)': lambda: (frozen_shape_adaptor_resnet(), (image(), )),
    'ShapeAdaptorDLA (frozen)': lambda: (frozen_shape_adaptor_dla(), (image(), )),
    'VGG16': lambda: (VGG16(norm_cfg=dict(type='BN')), (torch.rand(1, 3, 33, 41), )),
    'AlignedXception': lambda: (AlignedXception(depth=41, widen_factor=0.125), (image(), )),
    'LargeFOVHead': lambda: (LargeFOVHead(in_channels=16, channels=16, num_classes=3),
                             ([torch.rand(2, 16, 8, 12)], )),
    'DLAUpHead': lambda: (DLAUpHead(in_channels=WIDTHS, channels=8, num_classes=3),
                          (pyramid(), )),
    'DLAUp': lambda: (DLAUp(WIDTHS), (pyramid(), )),
    'AllLevelRoIExtractor': lambda: (AllLevelRoIExtractor(roi_layer(use_torchvision=True), 8,
                                                          [4, 8, 16, 32]),
                                     (pyramid([8] * 4), rois())),
    'AdaptiveFeaturePoolingBBoxHead': lambda: (det_module(dict(
        type=AdaptiveFeaturePoolingBBoxHead, in_channels=8, num_shared_fcs=2,
        fc_out_channels=32, roi_feat_size=7, num_classes=3)), (torch.rand(3, 4, 8, 7, 7), )),
    'AdaptiveFeaturePoolingMaskHead': lambda: (det_module(dict(
        type=AdaptiveFeaturePoolingMaskHead, in_channels=8, conv_out_channels=8, num_convs=2,
        num_classes=3)), (torch.rand(3, 4, 8, 14, 14), )),
    'ConsistentSupervisionRPNHead': lambda: (
        consistent_supervision_head('ConsistentSupervisionRPNHead'), (five_levels(), )),
    'ConsistentSupervisionRetinaHead': lambda: (
        consistent_supervision_head('ConsistentSupervisionRetinaHead'), (five_levels(), )),
    'DenseConsistentSupervisionRetinaHead': lambda: (
        consistent_supervision_head('DenseConsistentSupervisionRetinaHead'), (five_levels(), )),
}


def explain(module, args):
    torch._dynamo.reset()
    return torch._dynamo.explain(module)(*args)


# Tracing the aligned Xception takes a minute per mode on one core; its training graph
# differs from the eval one only in BN's mode, which every other backbone here covers.
EVAL_ONLY = {'AlignedXception'}
CASES = [pytest.param(family, training, id=f"{family}-{'train' if training else 'eval'}")
         for family in MODULES for training in (True, False)
         if not (training and family in EVAL_ONLY)]


@pytest.mark.parametrize('family, training', CASES)
def test_module_family_has_no_graph_breaks(family, training):
    torch.manual_seed(0)
    module, args = MODULES[family]()
    module.train(training)
    result = explain(module, args)
    reasons = [f'{r.reason} at {r.user_stack[-1] if r.user_stack else "?"}'
               for r in result.break_reasons]
    assert result.graph_break_count == 0, '\n'.join(reasons)
    assert result.graph_count == 1


def test_mmcv_roi_align_breaks_once_per_level_and_torchvisions_matches_it():
    """Why SoftRoIExtractor is checked with use_torchvision=True (module docstring)."""
    from mmcv.ops import RoIAlign

    class TwoLevels(torch.nn.Module):
        """mmcv's RoIAlign on two levels, as an extractor calls it."""

        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(RoIAlign(7, 1 / s, 2) for s in (4, 8))

        def forward(self, feats, boxes):
            return sum(layer(f, boxes) for layer, f in zip(self.layers, feats))

    feats, boxes = pyramid([8] * 4), rois()
    assert explain(TwoLevels(), (feats[:2], boxes)).graph_break_count > 0
    mmcv_extractor = SoftRoIExtractor(roi_layer(), 8, [4, 8, 16, 32]).eval()
    tv_extractor = SoftRoIExtractor(roi_layer(use_torchvision=True), 8, [4, 8, 16, 32]).eval()
    tv_extractor.load_state_dict(mmcv_extractor.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(tv_extractor(feats, boxes), mmcv_extractor(feats, boxes),
                                   atol=1e-5, rtol=1e-5)
