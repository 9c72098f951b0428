"""The model-zoo metadata: ``mim search mmplug_agg`` lists exactly our configs, and each builds.

Every config named in a metafile must exist and be one of the configs that
``test_configs.py::test_config_builds`` builds; every non-demo config must be
named; and the metafiles must be what ``tools/misc/make_metafiles.py`` writes now
(so a renamed config or a changed schedule cannot leave stale metadata behind).
"""
import subprocess
import sys

import modelindex
import pytest

from mmplug_agg.testing.cli import CONFIG_DIR

REPO = CONFIG_DIR.parent
REAL_CONFIGS = {p.stem for p in CONFIG_DIR.glob('*.py') if not p.stem.endswith('_demo')}


@pytest.fixture(scope='module')
def model_index():
    # modelindex is what mim uses to read model-index.yml and the metafiles it imports.
    index = modelindex.load(str(REPO / 'model-index.yml'))
    index.build_models_with_collections()
    return index


def test_every_metafile_model_names_an_existing_config(model_index):
    assert len(model_index.models) == len(REAL_CONFIGS)
    for model in model_index.models:
        path = REPO / model.config
        assert path.is_file(), f'{model.name}: {model.config} does not exist'
        assert path.parent == CONFIG_DIR and path.stem == model.name
        # test_config_builds builds every config of CONFIG_DIR, so this one too.
        assert model.name in REAL_CONFIGS
        assert model.in_collection, model.name
        assert model.metadata.training_data in ('COCO', 'Cityscapes', 'PASCAL VOC 2012')


def test_every_real_config_is_listed(model_index):
    listed = {model.name for model in model_index.models}
    assert listed == REAL_CONFIGS, f'not listed: {sorted(REAL_CONFIGS - listed)}'


def test_collections_name_their_paper_and_docs_page(model_index):
    for collection in model_index.collections:
        assert collection.paper['URL'].startswith('https://'), collection.name
        assert (REPO / collection.readme).is_file(), collection.readme


def test_metafiles_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'misc' / 'make_metafiles.py'), '--check'],
        capture_output=True, text=True)
    assert result.returncode == 0, (
        f'{result.stdout}{result.stderr}run python tools/misc/make_metafiles.py')
