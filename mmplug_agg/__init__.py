"""mmplug_agg: feature-aggregation architectures for mmdet 3.x and mmseg 1.x.

Importing the package (directly, or through ``custom_imports`` in a config)
checks the installed stack, registers every module into mmdet's and/or mmseg's
registries and makes mmengine checkpoints loadable under torch >= 2.6.
"""
from .utils.check_env import check_mmcv

check_mmcv()

from . import models  # noqa: E402,F401  (registers the modules)
from . import engine  # noqa: E402,F401  (registers the optimiser constructor and hook)
from .registry import installed_toolboxes  # noqa: E402

if 'mmseg' in installed_toolboxes():
    from . import evaluation  # noqa: F401  (registers the metrics)
from .utils.checkpoint import register_checkpoint_loaders  # noqa: E402
from .version import __version__, version_info  # noqa: E402

register_checkpoint_loaders()

__all__ = ['__version__', 'version_info']
