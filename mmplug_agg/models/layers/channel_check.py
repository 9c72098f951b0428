"""One-line errors for backbone outputs that do not fit a neck's ``in_channels``.

A backbone swapped under a neck (DLA-34 under an R50 AugFPN config) otherwise
fails deep inside the first convolution with a PyTorch traceback that names
neither the neck nor the argument to change. The necks of this package call
:func:`check_in_channels` on their inputs (a few integer comparisons, no host
sync, no graph break), and modules that know the backbone's widths when they
are built (:class:`RecursiveFeaturePyramid`) call it at build time.
``tools/train.py`` and ``tools/test.py`` report a :class:`ChannelMismatchError`
as one ``error:`` line and exit code 1.
"""
from typing import Sequence, Union

from torch import Tensor


class ChannelMismatchError(ValueError):
    """Inputs whose widths differ from the ``in_channels`` a module was built for."""


def check_in_channels(owner: str,
                      inputs: Sequence[Union[Tensor, int]],
                      in_channels: Sequence[int],
                      argument: str = 'in_channels') -> None:
    """Raise a :class:`ChannelMismatchError` unless ``inputs`` have ``in_channels`` widths.

    Args:
        owner: The module as the user configures it, e.g. ``'AugFPN (neck)'``.
        inputs: The maps the module receives (``(N, C, H, W)`` tensors), or
            their widths.
        in_channels: The widths the module was built for, one per input.
        argument: The argument that sets ``in_channels``.

    Raises:
        ChannelMismatchError: One line naming ``owner``, the first level that
            differs, the expected and the received width, and what to set
            ``argument`` to.
    """
    widths = [x if isinstance(x, int) else x.shape[1] for x in inputs]
    if len(widths) == len(in_channels) and all(w == c for w, c in zip(widths, in_channels)):
        return
    widths = [int(w) for w in widths]
    expected = list(in_channels)
    fix = (f'set {argument}={widths} to match the backbone, or pick backbone out_indices '
           f'whose widths are {expected}')
    if len(widths) != len(expected):
        raise ChannelMismatchError(
            f'{owner}: expected {len(expected)} maps ({argument}={expected}), received '
            f'{len(widths)} input levels of widths {widths}; {fix}')
    level = next(i for i, (w, c) in enumerate(zip(widths, expected)) if w != c)
    raise ChannelMismatchError(
        f'{owner}: input level {level} has {widths[level]} channels but {argument}[{level}] is '
        f'{expected[level]} ({argument}={expected}, received widths {widths}); {fix}')
