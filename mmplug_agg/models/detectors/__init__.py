from .shape_adaptor_faster_rcnn import ShapeAdaptorFasterRCNN

__all__ = ['ShapeAdaptorFasterRCNN']
