from .consistent_supervision_roi_head import ConsistentSupervisionRoIHead  # noqa: F401
from .soft_roi_extractor import AllLevelRoIExtractor, SoftRoIExtractor  # noqa: F401
from .lateral_supervision_head import LateralSupervisionRoIHead  # noqa: F401
from .adaptive_feature_pooling import (AdaptiveFeaturePoolingBBoxHead,  # noqa: F401
                                       AdaptiveFeaturePoolingMaskHead)
