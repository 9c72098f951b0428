from .dla import DLA, DLA_ARCHS, convert_dla_state_dict

__all__ = ['DLA', 'DLA_ARCHS', 'convert_dla_state_dict']
from .recursive_feature_pyramid import RecursiveFeaturePyramid  # noqa: E402
from .stage_runners import StageRunner, build_stage_runner  # noqa: E402
__all__ += ['RecursiveFeaturePyramid', 'StageRunner', 'build_stage_runner']
from .shape_adaptor import ShapeAdaptorDLA, ShapeAdaptorResNet, ShapeAdaptorResNeXt  # noqa: E402
__all__ += ['ShapeAdaptorDLA', 'ShapeAdaptorResNet', 'ShapeAdaptorResNeXt']
from .vgg import VGG16  # noqa: E402
__all__ += ['VGG16']
from .aligned_xception import (XCEPTION_ARCHS, AlignedXception,  # noqa: E402
                               convert_xception_state_dict)
__all__ += ['AlignedXception', 'XCEPTION_ARCHS', 'convert_xception_state_dict']
