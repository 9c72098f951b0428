"""RoI pooling in a form both ONNX exporters map to standard ONNX ops.

* mmcv's ``RoIAlign`` is an autograd function around a compiled kernel: the
  TorchScript exporter maps it through a symbolic of mmcv's own (an mmcv custom
  op when mmcv's ONNX runtime plugin is loaded), the dynamo exporter cannot trace
  it at all. :class:`OnnxRoIAlign` computes the same thing with torchvision's
  ``roi_align``, which both exporters map to ONNX ``RoiAlign`` (opset >= 16:
  ``coordinate_transformation_mode='half_pixel'`` for ``aligned=True``).
* mmdet's ``SingleRoIExtractor`` pools each RoI from one level, chosen by its
  size, through ``nonzero`` and index writes; a traced graph would keep the
  choice of the traced RoIs. :class:`OnnxSingleRoIExtractor` pools every RoI
  from every level and keeps each RoI's own level with a 0/1 mask, which gives
  the same values (one level is multiplied by 1, the others by 0) for any RoIs.

:func:`prepare_roi_layers` swaps both into a model (for export only).
"""
from typing import List

from mmcv.ops import RoIAlign
from torch import Tensor, nn


class OnnxRoIAlign(nn.Module):
    """mmcv's ``RoIAlign`` (average pooling) through ``torchvision.ops.roi_align``."""

    def __init__(self, layer: RoIAlign) -> None:
        super().__init__()
        if layer.pool_mode != 'avg':
            raise ValueError(f"RoIAlign(pool_mode={layer.pool_mode!r}) has no exact ONNX "
                             "mapping; only pool_mode='avg' exports")
        self.output_size = tuple(layer.output_size)
        self.spatial_scale = float(layer.spatial_scale)
        self.sampling_ratio = int(layer.sampling_ratio)
        self.aligned = bool(layer.aligned)

    def forward(self, feat: Tensor, rois: Tensor) -> Tensor:
        from torchvision.ops import roi_align
        return roi_align(feat, rois.to(feat.dtype), self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self) -> str:
        return (f'output_size={self.output_size}, spatial_scale={self.spatial_scale}, '
                f'sampling_ratio={self.sampling_ratio}, aligned={self.aligned}')


class OnnxSingleRoIExtractor(nn.Module):
    """``SingleRoIExtractor.forward`` without data-dependent indexing (see module doc)."""

    def __init__(self, extractor: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor

    @property
    def num_inputs(self) -> int:
        return self.extractor.num_inputs

    def forward(self, feats, rois: Tensor, roi_scale_factor=None) -> Tensor:
        extractor = self.extractor
        rois = rois.type_as(feats[0])
        num_levels = len(feats)
        if num_levels == 1:
            return extractor.roi_layers[0](feats[0], rois)
        target_levels = extractor.map_roi_levels(rois, num_levels)
        if roi_scale_factor is not None:
            rois = extractor.roi_rescale(rois, roi_scale_factor)
        roi_feats = None
        for level in range(num_levels):
            pooled = extractor.roi_layers[level](feats[level], rois)
            keep = (target_levels == level).to(pooled.dtype).view(-1, 1, 1, 1)
            roi_feats = pooled * keep if roi_feats is None else roi_feats + pooled * keep
        return roi_feats


def prepare_roi_layers(model: nn.Module) -> List[str]:
    """Swap mmcv RoIAlign layers and mmdet SingleRoIExtractors of ``model`` in place.

    Returns:
        The names of the replaced modules.
    """
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    replaced = []
    # RoI layers first: their names run through the extractors wrapped next.
    for wanted, make in ((RoIAlign, OnnxRoIAlign), (SingleRoIExtractor, OnnxSingleRoIExtractor)):
        for name, module in list(model.named_modules()):
            if type(module) is not wanted:
                continue
            parent_name, _, child = name.rpartition('.')
            parent = model.get_submodule(parent_name) if parent_name else model
            if isinstance(parent, nn.ModuleList):
                parent[int(child)] = make(module)
            else:
                setattr(parent, child, make(module))
            replaced.append(name)
    return replaced
