"""How mmplug_agg's classes reach mmdet's and mmseg's registries.

Configs inherited from mmdet or mmseg carry ``default_scope='mmdet'`` (or
``'mmseg'``), and mmengine looks a plain type name up in that scope's registry
and its parents only. So each class is registered straight into the toolbox
registries that can use it:

* backbones, necks and generic layers: mmdet's and mmseg's ``MODELS``;
* RoI components, dense heads and detectors: mmdet's ``MODELS``;
* decode heads and segmentors: mmseg's ``MODELS``.

A toolbox that is not installed is skipped, so the package imports with only
one of mmdet and mmseg present.
"""
import importlib
from typing import Callable, Dict, Tuple, Type

from mmengine.registry import Registry

TOOLBOXES = ('mmdet', 'mmseg')


def _load_toolbox_registries() -> Dict[str, Registry]:
    registries = {}
    for toolbox in TOOLBOXES:
        try:
            registries[toolbox] = importlib.import_module(f'{toolbox}.registry').MODELS
        except ImportError:
            continue
    if not registries:
        raise ImportError('mmplug_agg needs mmdet (3.x) or mmsegmentation (1.x); neither is '
                          'installed. Run tools/setup_env.sh or pip install mmdet mmsegmentation.')
    return registries


MODEL_REGISTRIES: Dict[str, Registry] = _load_toolbox_registries()


def register_model(*toolboxes: str) -> Callable[[Type], Type]:
    """Class decorator that registers a module into the given toolboxes' ``MODELS``.

    Toolboxes that are not installed are skipped.

    Example:
        >>> @register_model('mmdet', 'mmseg')
        ... class MyNeck(BaseModule):
        ...     ...
    """
    unknown = set(toolboxes) - set(TOOLBOXES)
    if unknown or not toolboxes:
        raise ValueError(f'toolboxes must be a non-empty subset of {TOOLBOXES}, '
                         f'got {toolboxes}')

    def register(cls: Type) -> Type:
        for toolbox in toolboxes:
            if toolbox in MODEL_REGISTRIES:
                MODEL_REGISTRIES[toolbox].register_module(module=cls)
        return cls

    return register


def installed_toolboxes() -> Tuple[str, ...]:
    return tuple(MODEL_REGISTRIES)


# Where each kind of module goes.
register_backbone = register_model('mmdet', 'mmseg')
register_neck = register_model('mmdet', 'mmseg')
register_layer = register_model('mmdet', 'mmseg')
register_det_module = register_model('mmdet')
register_seg_module = register_model('mmseg')


def register_seg_metric(cls: Type) -> Type:
    """Register an evaluation metric into mmseg's ``METRICS`` (when mmseg is installed)."""
    if 'mmseg' in MODEL_REGISTRIES:
        importlib.import_module('mmseg.registry').METRICS.register_module(module=cls)
    return cls
