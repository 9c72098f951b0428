"""Checks that the OpenMMLab stack under mmplug_agg is one that works.

mmdet 3.3 and mmseg 1.2 refuse mmcv >= 2.2, and ``mmcv-lite`` (or an mmcv built
without ``MMCV_WITH_OPS=1``) lacks the compiled ops (RoIAlign, NMS, deformable
conv) that detectors need. Both mistakes otherwise surface deep inside a
training run; here they end with one line that says how to fix them.

Run ``python -m mmplug_agg.utils.check_env`` to print the versions in use.
"""
import importlib
import sys

from mmengine.utils import digit_version

MMCV_MIN = '2.0.0rc4'
MMCV_MAX = '2.2.0'  # exclusive: mmdet 3.3.0 and mmseg 1.2.2 reject 2.2.0 and later
FIX_HINT = ("Install mmcv 2.1.0 with compiled ops: pip install 'setuptools<70' && "
            "MMCV_WITH_OPS=1 pip install --no-build-isolation mmcv==2.1.0 "
            "(or run tools/setup_env.sh, which does that).")


class IncompatibleStackError(ImportError):
    """Raised when the installed stack cannot run mmplug_agg."""


def check_mmcv() -> str:
    """Return mmcv's version; raise one clear ImportError when it is unusable."""
    try:
        mmcv = importlib.import_module('mmcv')
    except ImportError as err:
        raise IncompatibleStackError(f'mmplug_agg needs mmcv, which is not importable ({err}). '
                                f'{FIX_HINT}') from None
    version = mmcv.__version__
    if not (digit_version(MMCV_MIN) <= digit_version(version) < digit_version(MMCV_MAX)):
        raise IncompatibleStackError(
            f'mmcv {version} is installed, but mmdet 3.3 / mmseg 1.2 need '
            f'{MMCV_MIN} <= mmcv < {MMCV_MAX}. {FIX_HINT}')
    try:
        importlib.import_module('mmcv._ext')
    except ImportError as err:
        raise IncompatibleStackError(
            f'mmcv {version} has no compiled ops (mmcv-lite, or built without '
            f'MMCV_WITH_OPS=1): {err}. {FIX_HINT}') from None
    return version


def collect_versions() -> dict:
    versions = {'python': sys.version.split()[0]}
    for name in ('torch', 'torchvision', 'mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmplug_agg'):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = 'not installed'
    import torch
    versions['cuda'] = torch.version.cuda if torch.cuda.is_available() else 'not available'
    return versions


def main() -> int:
    try:
        check_mmcv()
    except IncompatibleStackError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for name, version in collect_versions().items():
        print(f'{name:12s} {version}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
