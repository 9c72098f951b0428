from .pyramid_features import PyramidFeatures, lateral_features

__all__ = ['PyramidFeatures', 'lateral_features']
from .ida_up import DLAUp, IDAUp, bilinear_kernel  # noqa: E402
__all__ += ['DLAUp', 'IDAUp', 'bilinear_kernel']
from .dense_crf import DenseCRF  # noqa: E402
__all__ += ['DenseCRF']
from .aspp import DetectoRSASPP  # noqa: E402
__all__ += ['DetectoRSASPP']
from .shape_adaptor import ShapeAdaptor  # noqa: E402
__all__ += ['ShapeAdaptor']
