from typing import Optional, Sequence

from torch import Tensor


class PyramidFeatures(tuple):
    """The tuple of pyramid levels a neck returns, carrying extra per-level features.

    mmdet's detectors hand the neck's output, unchanged, to their RPN, RoI and
    dense heads. A neck that must give a head something more (AugFPN's lateral
    features M2-M5 for consistent supervision) returns this tuple: every head
    that expects a tuple of levels works as before, and a head that wants the
    extra features reads ``laterals``. Slicing returns a plain tuple.

    Args:
        levels (Sequence[Tensor]): The pyramid levels.
        laterals (Sequence[Tensor], optional): Features to carry alongside.
    """

    laterals: Optional[tuple]

    def __new__(cls, levels: Sequence[Tensor], laterals: Optional[Sequence[Tensor]] = None):
        pyramid = super().__new__(cls, levels)
        pyramid.laterals = tuple(laterals) if laterals is not None else None
        return pyramid


def lateral_features(feats: Sequence[Tensor], who: str) -> tuple:
    """The laterals carried by ``feats``, or one clear error naming ``who`` needs them."""
    laterals = getattr(feats, 'laterals', None)
    if laterals is None:
        raise RuntimeError(
            f'{who} needs the lateral features of a neck that hands them out in training '
            "(type='AugFPN'); the neck gave a plain tuple")
    return laterals
