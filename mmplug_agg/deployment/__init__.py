"""Deployment: ONNX export of detectors and segmentors, checked with onnxruntime.

See docs/deployment.md and ``tools/deployment/pytorch2onnx.py``.
"""
from mmplug_agg.deployment.folding import (FoldedSAConv2d, NotFoldable,
                                           fold_weight_standardisation)
from mmplug_agg.deployment.onnx import (EXPORTERS, ExportedGraph, Parity, UnsupportedExport,
                                        export_onnx, prepare_for_export, roi_path, verify_onnx)
from mmplug_agg.deployment.pooling import is_exporting

__all__ = [
    'EXPORTERS', 'ExportedGraph', 'FoldedSAConv2d', 'NotFoldable', 'Parity',
    'UnsupportedExport', 'export_onnx', 'fold_weight_standardisation', 'is_exporting',
    'prepare_for_export', 'roi_path', 'verify_onnx'
]
