"""An unusable mmcv is reported with one clear message that says how to fix it."""
import subprocess
import sys
import types

import pytest

from mmplug_agg.utils import check_env
from mmplug_agg.utils.check_env import IncompatibleStackError, check_mmcv


def test_installed_mmcv_passes():
    assert check_mmcv() == '2.1.0'


@pytest.mark.parametrize('version', ['2.2.0', '1.7.1'])
def test_mmcv_outside_supported_range(monkeypatch, version):
    monkeypatch.setitem(sys.modules, 'mmcv', types.SimpleNamespace(__version__=version))
    with pytest.raises(IncompatibleStackError, match=f'mmcv {version} is installed.*mmcv==2.1.0'):
        check_mmcv()


def test_mmcv_without_compiled_ops(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mmcv', types.SimpleNamespace(__version__='2.1.0'))
    monkeypatch.setitem(sys.modules, 'mmcv._ext', None)
    with pytest.raises(IncompatibleStackError, match='no compiled ops.*MMCV_WITH_OPS=1'):
        check_mmcv()


def test_import_of_package_fails_clearly_with_mmcv_lite():
    code = ("import sys, types\n"
            "sys.modules['mmcv._ext'] = None\n"
            "import mmplug_agg\n")
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert 'IncompatibleStackError' in last_line and 'no compiled ops' in last_line


def test_main_prints_versions(capsys):
    assert check_env.main() == 0
    out = capsys.readouterr().out
    assert 'mmcv' in out and '2.1.0' in out and 'mmdet' in out
