from .trimap_iou_metric import TrimapIoUMetric, boundary_band

__all__ = ['TrimapIoUMetric', 'boundary_band']
