from .hrnetv2_head import HRNetV2Head

__all__ = ['HRNetV2Head']
from .dlaup_head import DLAUpHead  # noqa: E402
__all__ += ['DLAUpHead']
from .deeplabv2_head import DeepLabV2Head  # noqa: E402
__all__ += ['DeepLabV2Head']
from .largefov_head import LargeFOVHead  # noqa: E402
__all__ += ['LargeFOVHead']
