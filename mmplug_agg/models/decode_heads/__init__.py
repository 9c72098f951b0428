from .hrnetv2_head import HRNetV2Head

__all__ = ['HRNetV2Head']
