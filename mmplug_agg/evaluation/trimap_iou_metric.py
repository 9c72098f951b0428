"""IoU in a band around the ground-truth boundaries (DeepLab's "trimap" evaluation).

DeepLab measures how well post-processing such as the dense CRF recovers object
boundaries by computing the IoU only over pixels within a band of a few pixels
around the boundaries of the ground truth. ``TrimapIoUMetric`` is mmseg's
``IoUMetric`` restricted to that band: pixels farther than ``band_width`` from a
label change count as ignored.
"""
from typing import Sequence

import torch
import torch.nn.functional as F
from mmseg.evaluation.metrics import IoUMetric
from torch import Tensor

from mmplug_agg.registry import register_seg_metric


def boundary_band(label: Tensor, band_width: int, ignore_index: int = 255) -> Tensor:
    """Pixels whose ``(2 band_width + 1)`` square window holds more than one label.

    Ignored pixels neither make nor join the band.
    """
    valid = label != ignore_index
    values = label.float().masked_fill(~valid, float('-inf'))[None, None]
    highest = F.max_pool2d(values, 2 * band_width + 1, stride=1, padding=band_width)
    values = label.float().masked_fill(~valid, float('inf'))[None, None]
    lowest = -F.max_pool2d(-values, 2 * band_width + 1, stride=1, padding=band_width)
    return (highest != lowest)[0, 0] & valid


@register_seg_metric
class TrimapIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` over the pixels near ground-truth boundaries only.

    Args:
        band_width (int): Half-width of the band in pixels (DeepLab plots
            widths up to 40 px on VOC). Defaults to 4.
        prefix (str): Metric name prefix. Defaults to ``'trimap'``.
        **kwargs: Arguments of ``IoUMetric`` (``iou_metrics``,
            ``ignore_index``...).

    Example:
        >>> val_evaluator = [dict(type='IoUMetric', iou_metrics=['mIoU']),
        ...                  dict(type='TrimapIoUMetric', band_width=4)]
    """

    def __init__(self, band_width: int = 4, prefix: str = 'trimap', **kwargs) -> None:
        if not isinstance(band_width, int) or band_width < 1:
            raise ValueError(f'band_width must be a positive int (pixels), got {band_width!r}')
        super().__init__(prefix=prefix, **kwargs)
        self.band_width = band_width

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        num_classes = len(self.dataset_meta['classes'])
        for data_sample in data_samples:
            pred_label = data_sample['pred_sem_seg']['data'].squeeze()
            label = data_sample['gt_sem_seg']['data'].squeeze().to(pred_label)
            band = boundary_band(label, self.band_width, self.ignore_index)
            label = label.masked_fill(~band, self.ignore_index)
            self.results.append(
                self.intersect_and_union(pred_label, label, num_classes, self.ignore_index))
