"""Shared fixtures: offline environment, tiny model and hub-layout data built once per session."""
import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports datasets / ms-swift: no hub, and caches that start empty.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix='medres-tests-'))
os.environ.update({
    'HF_HUB_OFFLINE': '1',
    'MODELSCOPE_OFFLINE': '1',
    'HF_DATASETS_OFFLINE': '1',
    'HF_HOME': str(_SESSION_DIR / 'hf'),
    'HF_DATASETS_CACHE': str(_SESSION_DIR / 'hf' / 'datasets'),
    'MODELSCOPE_CACHE': str(_SESSION_DIR / 'modelscope'),
    'TOKENIZERS_PARALLELISM': 'false',
})
os.environ.pop('MEDRES_REGISTRY', None)
os.environ.pop('MEDRES_LOCAL_SOURCES', None)


@pytest.fixture(scope='session')
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope='session')
def tiny_qwen2_vl(session_dir) -> Path:
    from swift_plugins.fixtures.tiny_qwen2_vl import build_tiny_qwen2_vl
    return build_tiny_qwen2_vl(session_dir / 'models' / 'tiny-qwen2-vl')


@pytest.fixture(scope='session')
def local_sources(session_dir) -> Path:
    from swift_plugins.fixtures.hub_vqa import build_local_sources
    return build_local_sources(session_dir / 'sources')


@pytest.fixture
def use_local_sources(local_sources, monkeypatch) -> Path:
    monkeypatch.setenv('MEDRES_LOCAL_SOURCES', str(local_sources))
    return local_sources


@pytest.fixture(scope='session')
def swift_registered():
    """Import the plugin the way ms-swift does (`--external_plugins <file>`)."""
    from swift.utils import import_external_file

    from swift_plugins.train.swift_run import PLUGIN_PATH
    return import_external_file(str(PLUGIN_PATH))


@pytest.fixture(scope='session')
def tiny_internvl(session_dir) -> Path:
    from swift_plugins.fixtures.tiny_families import build_tiny_internvl
    return build_tiny_internvl(session_dir / 'models' / 'tiny-internvl')


@pytest.fixture(scope='session')
def tiny_llava_onevision(session_dir) -> Path:
    from swift_plugins.fixtures.tiny_families import build_tiny_llava_onevision
    return build_tiny_llava_onevision(session_dir / 'models' / 'tiny-llava-onevision')


@pytest.fixture(autouse=True)
def isolated_env():
    """Each test starts with the session's environment, no MEDRES_* settings and an empty quota book.

    Restored by value, not with monkeypatch: `datasets.Dataset.map(num_proc=...)` rebinds
    `os.environ` to a copy, so monkeypatch's undo would land on the old object and leak.
    """
    import swift_plugins.resolution.families as families
    import swift_plugins.resolution.mixing as mixing
    saved = {k: v for k, v in os.environ.items() if not k.startswith('MEDRES_')}
    for key in [k for k in os.environ if k.startswith('MEDRES_')]:
        del os.environ[key]
    mixing.QUOTAS.clear()
    families._RUN_FAMILY.clear()   # a template built by one test is no other test's run family
    yield
    os.environ.clear()
    os.environ.update(saved)
    mixing.QUOTAS.clear()
    families._RUN_FAMILY.clear()


@pytest.fixture
def data_home(tmp_path, monkeypatch) -> Path:
    """MEDRES_DATA_HOME for one test: where `medres prepare` writes and registry entries look."""
    home = tmp_path / 'medres-home'
    monkeypatch.setenv('MEDRES_DATA_HOME', str(home))
    return home


@pytest.fixture(scope='session')
def checkpoint_shells(session_dir) -> dict:
    """Weightless folders of the four real checkpoints (published configuration, real token ids)."""
    from swift_plugins.fixtures.checkpoint_shells import build_shells
    return build_shells(session_dir / 'models' / 'shells')
