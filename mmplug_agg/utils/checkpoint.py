"""Checkpoint loading: mmengine 0.10.x checkpoints under torch >= 2.6, and ``timm://``.

torch 2.6 switched ``torch.load`` to ``weights_only=True``. mmengine 0.10.7's local
loader calls ``torch.load`` without that argument, and its own checkpoints hold a
``message_hub`` with ``HistoryBuffer`` objects and numpy values, so ``--resume`` and
``load_from`` of anything mmengine wrote fail with ``UnpicklingError``. We replace the
loader registered for plain paths (the prefix ``''``) through mmengine's own scheme
registry: users need no environment variable and no patched mmengine.

``timm://<model>`` (e.g. ``timm://dla34.in1k``) fetches timm's pretrained weights
and converts them to this package's parameter names, so a config can start a
backbone from ImageNet weights without a separate conversion step.
"""
import os.path as osp
import re
from typing import Callable, Dict

import torch
from mmengine.runner import CheckpointLoader


def load_local_checkpoint(filename: str, map_location=None):
    """Load a checkpoint from a local path, allowing mmengine's pickled run state.

    A checkpoint can run code when unpickled: load only files you trust, as with
    any ``torch.load`` before torch 2.6 (and any mmengine release before 0.11).
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def _timm_converters() -> Dict[str, Callable]:
    from mmplug_agg.models.backbones import convert_dla_state_dict
    from mmplug_agg.models.backbones import convert_xception_state_dict
    return {'dla': lambda state: convert_dla_state_dict(state)[0],
            'xception': lambda state: convert_xception_state_dict(state)[0]}


def load_timm_checkpoint(filename: str, map_location=None) -> Dict[str, torch.Tensor]:
    """Load ``timm://<model>[.<tag>]`` as a state dict in mmplug_agg's key names."""
    model_name = filename[len('timm://'):]
    family = re.match(r'[a-z]*', model_name)[0]
    converter = _timm_converters().get(family)
    if converter is None:
        raise ValueError(f'no mmplug_agg converter for timm model {model_name!r}; timm:// '
                         f'supports the families {sorted(_timm_converters())}')
    try:
        import timm
    except ImportError as err:
        raise ImportError(f'{filename} needs timm: pip install timm') from err
    state = converter(timm.create_model(model_name, pretrained=True).state_dict())
    if map_location is not None:
        state = {k: v.to(map_location) for k, v in state.items()}
    return state


def load_effdet_checkpoint(filename: str, map_location=None) -> Dict[str, torch.Tensor]:
    """Load ``effdet://<model>`` (e.g. ``effdet://tf_efficientdet_d0``), converted."""
    from mmplug_agg.utils.effdet_conversion import load_effdet_checkpoint as load
    return load(filename, map_location)


def register_checkpoint_loaders() -> None:
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
    CheckpointLoader.register_scheme(prefixes='timm://', loader=load_timm_checkpoint, force=True)
    CheckpointLoader.register_scheme(prefixes='effdet://', loader=load_effdet_checkpoint,
                                     force=True)
