"""Helpers for tests and analysis tools that need no dataset on disk."""
from .photos import sample_photo
from .synthetic import make_det_batch, make_seg_batch, tiny_hrnet_extra

__all__ = ['make_det_batch', 'make_seg_batch', 'sample_photo', 'tiny_hrnet_extra']
