"""What every checkpoint converter in ``tools/model_converters/`` shares.

A converter is a function ``convert(source: SourceState) -> Dict[str, Tensor]`` that
reads the published tensors with ``source.take(key)`` and returns them under our key
names. :func:`convert_checkpoint` runs it and does the rest the same way for every
source:

* prints the sha256 of the given file (compare it with the hash the source publishes);
* refuses a checkpoint of another architecture with one line (``require_keys`` in the
  converter, and the strict match against the target model);
* reports the source keys the converter never read (``unmapped``) and, against the
  target model's state dict, the missing, unexpected and wrongly shaped keys; any of
  them stops the tool before anything is written;
* writes an mmengine checkpoint ``{'meta': ..., 'state_dict': ...}``, loadable with
  ``load_from=`` or ``init_cfg=dict(type='Pretrained', checkpoint=...)``.

Example:
    >>> def convert(source):
    ...     source.require_keys(['fc.weight'], 'toy')
    ...     return {'linear.weight': source.take('fc.weight')}
    >>> # convert_checkpoint('toy.pth', 'out.pth', convert, expected=model.state_dict())
"""
import hashlib
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Union

import torch

from mmplug_agg.utils.launch import UserFacingError

StateDict = Dict[str, torch.Tensor]


def sha256sum(path: str, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def load_state_dict(path: str) -> StateDict:
    """Read the tensors of a published checkpoint (``.pth``, ``.pth.tar``, ``.safetensors``).

    Wrappers used by the sources (mmengine's ``state_dict``, CenterNet's and others'
    ``model``) are removed. Only tensors are unpickled (``weights_only=True``), so a
    published file cannot run code here; mmengine checkpoints whose ``meta`` holds other
    objects are read with the stricter loader failing first, then without it.

    Raises:
        UserFacingError: the file is missing or holds no state dict.
    """
    if not osp.isfile(path):
        raise UserFacingError(f"checkpoint '{path}' does not exist")
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        checkpoint = load_file(path)
    else:
        try:
            checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        except Exception:  # noqa: BLE001 - mmengine meta (e.g. HistoryBuffer) is pickled
            checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    for wrapper in ('state_dict', 'model'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(wrapper), dict):
            checkpoint = checkpoint[wrapper]
    if not isinstance(checkpoint, dict) or not checkpoint:
        raise UserFacingError(f"'{path}' holds no state dict")
    # DataParallel-trained checkpoints (CenterNet, ucbdrive) prefix every key.
    if all(k.startswith('module.') for k in checkpoint):
        checkpoint = {k[len('module.'):]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


class SourceState:
    """A source state dict whose keys a converter consumes one at a time.

    ``take`` hands out each key at most once, so a converter can neither drop a tensor
    silently (it stays in :attr:`unused`) nor map one tensor to two places.

    Args:
        state: the source tensors.
        name: what the source is, for error messages (e.g. a file name).
    """

    def __init__(self, state: Mapping[str, torch.Tensor], name: str = 'checkpoint') -> None:
        self.name = name
        self._state = dict(state)
        self._taken: Dict[str, int] = {}
        self.skipped: List[str] = []

    def __contains__(self, key: str) -> bool:
        return key in self._state

    def keys(self) -> List[str]:
        return list(self._state)

    def shape(self, key: str) -> torch.Size:
        return self._state[key].shape

    def take(self, key: str) -> torch.Tensor:
        if key in self._taken:
            raise RuntimeError(f'converter bug: source key {key!r} read twice')
        if key not in self._state:
            raise UserFacingError(f'{self.name} lacks {key!r}: it is not the architecture '
                                  'this converter expects')
        self._taken[key] = 1
        return self._state[key]

    def take_prefix(self, prefix: str) -> StateDict:
        """Take every key that starts with ``prefix``; returns them without it."""
        return {k[len(prefix):]: self.take(k) for k in self.keys()
                if k.startswith(prefix) and k not in self._taken}

    def skip(self, key: str) -> None:
        """Consume a key on purpose (e.g. a classifier the target does not have)."""
        self.take(key)
        self.skipped.append(key)

    @property
    def taken(self) -> List[str]:
        return list(self._taken)

    @property
    def unused(self) -> List[str]:
        return [k for k in self._state if k not in self._taken]

    def require_keys(self, keys: Iterable[str], arch: str) -> None:
        """Fail with one line unless every key of ``keys`` is present."""
        absent = [k for k in keys if k not in self._state]
        if absent:
            raise UserFacingError(f'{self.name} is not a {arch} checkpoint: it has no '
                                  f'{", ".join(absent[:3])}')


@dataclass
class MatchReport:
    """How a converted state dict matches a target model's state dict."""
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def lines(self) -> List[str]:
        return [f'missing keys: {", ".join(self.missing) or "none"}',
                f'unexpected keys: {", ".join(self.unexpected) or "none"}',
                f'shape mismatches: {", ".join(self.mismatched) or "none"}']


def match_state_dict(converted: Mapping[str, torch.Tensor],
                     expected: Mapping[str, torch.Tensor]) -> MatchReport:
    """Compare keys and shapes; BN ``num_batches_tracked`` counters may be absent."""
    return MatchReport(
        missing=[k for k in expected
                 if k not in converted and not k.endswith('num_batches_tracked')],
        unexpected=[k for k in converted if k not in expected],
        mismatched=[f'{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}'
                    for k, v in converted.items()
                    if k in expected and v.shape != expected[k].shape])


def save_checkpoint(state_dict: StateDict, dst: str, meta: Optional[dict] = None) -> None:
    """Write an mmengine checkpoint holding only ``meta`` and ``state_dict``."""
    tensors = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
    torch.save({'meta': dict(meta or {}), 'state_dict': tensors}, dst)


def expected_state_dict(config: str) -> StateDict:
    """The state dict of the model a config builds (random weights: nothing is downloaded)."""
    from mmplug_agg.utils.launch import build_model, load_config
    model, _ = build_model(load_config(config))
    return model.state_dict()


def convert_checkpoint(src: str, dst: str, convert: Callable[[SourceState], StateDict],
                       expected: Union[Mapping[str, torch.Tensor],
                                       Callable[[], Mapping[str, torch.Tensor]], None] = None,
                       meta: Optional[dict] = None,
                       log: Callable[[str], None] = print,
                       target_name: Optional[str] = None) -> StateDict:
    """Load ``src``, convert it, check it against ``expected`` and write ``dst``.

    Args:
        src: the published checkpoint.
        dst: where to write the mmengine checkpoint.
        convert: reads a :class:`SourceState`, returns our key names.
        expected: the target model's state dict, or a function returning it (called
            after ``convert``, so a converter may pick the target from the source); when
            given, any missing, unexpected or mis-shaped key stops the conversion.
        meta: extra ``meta`` entries (the source file name and sha256 are always added);
            read when ``dst`` is written, so ``convert`` may still add to it.
        log: where the report goes.
        target_name: what ``expected`` is, for the error message (e.g. ``'dla34'``).

    Returns:
        The converted state dict.

    Raises:
        UserFacingError: another architecture, unmapped keys or a mismatch; ``dst`` is
            then not written.
    """
    if not osp.isfile(src):
        raise UserFacingError(f"checkpoint '{src}' does not exist")
    digest = sha256sum(src)
    log(f'source: {src}')
    log(f'sha256: {digest}')
    source = SourceState(load_state_dict(src), name=f"'{osp.basename(src)}'")
    converted = convert(source)
    log(f'converted {len(source.taken)} source tensors into {len(converted)}')
    log(f'dropped on purpose: {", ".join(source.skipped) or "none"}')
    log(f'unmapped source keys: {", ".join(source.unused) or "none"}')
    if source.unused:
        raise UserFacingError(f'{len(source.unused)} source keys have no place in the '
                              'target; nothing written')
    if callable(expected):
        expected = expected()
    if expected is not None:
        report = match_state_dict(converted, expected)
        for line in report.lines():
            log(line)
        if not report.ok:
            if target_name:
                raise UserFacingError(f'the checkpoint does not match {target_name}; '
                                      'nothing written')
            raise UserFacingError('the converted checkpoint does not match the target '
                                  'model; nothing written')
    save_checkpoint(converted, dst, dict(meta or {}, converted_from=osp.basename(src),
                                         source_sha256=digest))
    log(f'wrote {dst}')
    return converted
