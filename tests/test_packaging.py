"""The installed package carries .mim/{configs,tools} so that mim finds them."""
import subprocess
import sys
import zipfile

from mmplug_agg.testing.cli import CONFIG_DIR, REPO_ROOT


def test_editable_install_links_mim_folder():
    import mmplug_agg
    from mim.utils import get_installed_path

    package_dir = get_installed_path('mmplug_agg')
    assert package_dir == str(REPO_ROOT / 'mmplug_agg')
    assert mmplug_agg.__file__.startswith(package_dir)
    for config in CONFIG_DIR.glob('*.py'):
        assert (REPO_ROOT / 'mmplug_agg' / '.mim' / 'configs' / config.name).is_file()
    assert (REPO_ROOT / 'mmplug_agg' / '.mim' / 'tools' / 'train.py').is_file()


def test_wheel_carries_configs_and_tools(tmp_path):
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    wheel, = tmp_path.glob('mmplug_agg-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert 'mmplug_agg/.mim/tools/train.py' in names
    assert 'mmplug_agg/.mim/tools/test.py' in names
    for config in CONFIG_DIR.glob('*.py'):
        assert f'mmplug_agg/.mim/configs/{config.name}' in names
    assert not any(name.startswith('tests/') for name in names)
