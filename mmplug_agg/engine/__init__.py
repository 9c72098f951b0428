"""Training-loop pieces: optimiser-wrapper constructors and hooks (registered in mmengine's
root registries, so that configs in mmdet's and mmseg's scopes both find them)."""
from .shape_adaptor import ShapeAdaptorLoggerHook, ShapeAdaptorOptimWrapperConstructor

__all__ = ['ShapeAdaptorLoggerHook', 'ShapeAdaptorOptimWrapperConstructor']
from .amp import CPUAmpOptimWrapper  # noqa: E402
__all__ += ['CPUAmpOptimWrapper']
