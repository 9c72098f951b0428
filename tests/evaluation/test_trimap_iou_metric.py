"""TrimapIoUMetric: IoU restricted to a band around ground-truth boundaries."""
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import METRICS

import mmplug_agg  # noqa: F401
from mmplug_agg.evaluation import TrimapIoUMetric, boundary_band


@pytest.fixture(autouse=True)
def mmseg_scope():
    """Other tests may have left mmdet's scope, where mmseg's metrics do not resolve."""
    init_default_scope('mmseg')


def test_band_covers_pixels_near_label_changes_only():
    label = torch.zeros(12, 12, dtype=torch.long)
    label[:, 6:] = 1
    label[0, 0] = 255  # ignored pixels are never in the band
    band = boundary_band(label, band_width=2)
    assert band[:, 4:8].all() and not band[:, :4].any() and not band[:, 8:].any()
    assert not boundary_band(torch.zeros(5, 5, dtype=torch.long), 1).any()


def test_metric_counts_band_pixels_only():
    metric = METRICS.build(dict(type='TrimapIoUMetric', band_width=1, iou_metrics=['mIoU']))
    assert isinstance(metric, TrimapIoUMetric)
    metric.dataset_meta = dict(classes=('a', 'b'))
    gt = torch.zeros(1, 8, 8, dtype=torch.long)
    gt[..., 4:] = 1
    pred = gt.clone()
    pred[..., 0] = 1  # wrong far from the boundary: not counted
    pred[..., 3] = 1  # wrong inside the band: counted
    # the evaluator hands metrics the data samples as dicts
    sample = dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt))
    metric.process({}, [sample])
    results = metric.compute_metrics(metric.results)
    # band = columns 3-4; class a: IoU 0 (column 3 lost), class b: 8 / 16
    assert results['mIoU'] == pytest.approx(25.0)


def test_bad_band_width():
    with pytest.raises(ValueError, match='band_width'):
        TrimapIoUMetric(band_width=0)
