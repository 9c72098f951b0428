# Importing each family registers its modules (see mmplug_agg/registry.py). Families
# built on one toolbox's base classes load only when that toolbox is installed.
from mmplug_agg.registry import installed_toolboxes
from . import backbones, layers, necks  # noqa: F401

if 'mmdet' in installed_toolboxes():
    from . import dense_heads, detectors, roi_heads  # noqa: F401
if 'mmseg' in installed_toolboxes():
    from . import decode_heads, segmentors  # noqa: F401
