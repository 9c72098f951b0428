"""Make mmengine 0.10.x checkpoints loadable under torch >= 2.6.

torch 2.6 switched ``torch.load`` to ``weights_only=True``. mmengine 0.10.7's local
loader calls ``torch.load`` without that argument, and its own checkpoints hold a
``message_hub`` with ``HistoryBuffer`` objects and numpy values, so ``--resume`` and
``load_from`` of anything mmengine wrote fail with ``UnpicklingError``. We replace the
loader registered for plain paths (the prefix ``''``) through mmengine's own scheme
registry: users need no environment variable and no patched mmengine.
"""
import os.path as osp

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


def register_trusted_local_loader() -> None:
    CheckpointLoader.register_scheme(prefixes='', loader=load_local_checkpoint, force=True)
