"""Datasets shipped with mmplug_agg: a synthetic shapes set for demos and tests."""
from .demo_data import (DEMO_CLASSES, DEMO_SEG_CLASSES, DEMO_SEG_PALETTE, SceneInstance,
                        check_demo_data, encode_segmentation, ensure_demo_data, render_scene)

__all__ = [
    'DEMO_CLASSES', 'DEMO_SEG_CLASSES', 'DEMO_SEG_PALETTE', 'SceneInstance', 'check_demo_data',
    'encode_segmentation', 'ensure_demo_data', 'render_scene'
]
