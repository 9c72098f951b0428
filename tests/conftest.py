"""Shared fixtures: small demo data and a working directory laid out like a checkout.

Tools run in a subprocess whose working directory holds ``data/demo`` (a link to a
small demo set made once per session), so configs keep their relative paths.
Helpers live in ``mmplug_agg.testing`` (never import a package named ``tests``:
mmseg's wheel installs one).
"""
from pathlib import Path

import pytest

from mmplug_agg.datasets import ensure_demo_data


@pytest.fixture(scope='session')
def small_demo_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('demo_data') / 'demo'
    ensure_demo_data(str(root), num_train=6, num_val=3, size=256, seed=0)
    return root


@pytest.fixture
def run_dir(tmp_path, small_demo_data) -> Path:
    (tmp_path / 'data').mkdir()
    (tmp_path / 'data' / 'demo').symlink_to(small_demo_data)
    return tmp_path
