# Importing each family registers its modules (see mmplug_agg/registry.py).
from . import backbones, decode_heads, detectors, layers, necks, roi_heads  # noqa: F401
