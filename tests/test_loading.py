"""Registry entries loaded through ms-swift's own `load_dataset`, as `swift sft` does."""
import io

import pytest
from PIL import Image

from swift_plugins.data.registry import RegistryError, get_entry
from swift_plugins.data.rows import DataError
from swift_plugins.data.sources import resolve_source
from swift_plugins.fixtures.hub_vqa import FIXTURE_SPECS, make_rows, write_hub_layout
from swift_plugins.settings import Settings

from helpers import load


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_every_split_is_reachable_with_ms_swift_rows():
    for name, spec in FIXTURE_SPECS.items():
        for split, n in spec['split_sizes'].items():
            ds = load(f'medres/{name}:{split}')
            assert len(ds) == n, (name, split)
            assert {'messages', 'images', 'chat_template_kwargs'} <= set(ds.features)
    default = load('medres/path-vqa')
    assert len(default) == FIXTURE_SPECS['path-vqa']['split_sizes']['train']
    both = load('medres/path-vqa:validation/test')
    assert len(both) == 6 + 12
    assert len(load('medres/slake:test#5')) == 5


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_row_content_and_metadata():
    ds = load('medres/vqa-rad:test')
    entry = get_entry('vqa-rad')
    modes = set()
    for i, row in enumerate(ds):
        system, user, assistant = row['messages']
        assert system == {'role': 'system', 'content': 'You are a biomedical expert.'}
        assert user['role'] == 'user' and user['content'].startswith('<image>')
        assert assistant['role'] == 'assistant' and assistant['content']
        meta = row['chat_template_kwargs']['medres']
        assert meta['id'] == f'vqa-rad/test/{i}' and meta['modality'] == entry.modality
        im = Image.open(io.BytesIO(row['images'][0]['bytes']))
        assert im.mode in ('RGB', 'L') and im.size == (meta['width'], meta['height'])
        modes.add(meta['source_mode'])
    # The fixture cycles through the modes the hub copies contain; all came out 8-bit.
    assert {'CMYK', 'P', 'LA', 'I;16'} <= modes


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_unknown_split_is_a_clear_error():
    with pytest.raises(RegistryError, match=r"medres/vqa-rad: unknown split\(s\) \['validation'\]"):
        load('medres/vqa-rad:validation')


@pytest.fixture
def corrupt_sources(tmp_path, monkeypatch):
    rows = make_rows(5, seed=3, size=(64, 64), stain=False)
    rows[2]['image'] = {'bytes': rows[2]['image']['bytes'][:40], 'path': None}  # truncated file
    write_hub_layout(tmp_path / 'vqa-rad', {'train': rows, 'test': make_rows(2, 4, (64, 64), False)})
    monkeypatch.setenv('MEDRES_LOCAL_SOURCES', str(tmp_path))
    return tmp_path


@pytest.mark.usefixtures('swift_registered', 'corrupt_sources')
def test_undecodable_row_fails_naming_dataset_split_and_row():
    with pytest.raises(DataError, match=r'medres/vqa-rad split=train row=2: cannot decode image'):
        load('medres/vqa-rad:train')


@pytest.mark.usefixtures('swift_registered', 'corrupt_sources')
def test_skip_mode_drops_only_the_bad_row(monkeypatch):
    monkeypatch.setenv('MEDRES_BAD_ROWS', 'skip')
    ds = load('medres/vqa-rad:train')
    assert [r['chat_template_kwargs']['medres']['index'] for r in ds] == [0, 1, 3, 4]


@pytest.mark.usefixtures('swift_registered')
def test_missing_column_names_the_registry_field(tmp_path, monkeypatch):
    from datasets import Dataset
    (tmp_path / 'vqa-rad' / 'data').mkdir(parents=True)
    Dataset.from_list([{'img': 'x', 'question': 'q', 'answer': 'a'}]).to_parquet(
        str(tmp_path / 'vqa-rad' / 'data' / 'train-00000-of-00001.parquet'))
    monkeypatch.setenv('MEDRES_LOCAL_SOURCES', str(tmp_path))
    with pytest.raises(RegistryError, match=r"vqa-rad\.yaml: field 'columns\.image': column 'image' is not in"):
        load('medres/vqa-rad:train')


def test_source_resolution_order(tmp_path, monkeypatch):
    entry = get_entry('vqa-rad')
    monkeypatch.delenv('MEDRES_LOCAL_SOURCES', raising=False)
    # no ms copy
    assert resolve_source(entry, use_hf=False, settings=Settings.from_env()).describe() == 'hf:flaviagiammarino/vqa-rad'
    assert resolve_source(entry, use_hf=True, settings=Settings.from_env()).kind == 'hf'
    monkeypatch.setenv('MEDRES_LOCAL_SOURCES', str(tmp_path))
    assert resolve_source(entry, use_hf=True, settings=Settings.from_env()).kind == 'hf'  # no folder for it there
    (tmp_path / 'vqa-rad').mkdir()
    src = resolve_source(entry, use_hf=True, settings=Settings.from_env())
    assert (src.kind, src.dataset_id) == ('local-override', str((tmp_path / 'vqa-rad').resolve()))


def test_local_only_entry_without_its_folder_says_how_to_prepare(tmp_path):
    from swift_plugins.data.registry import load_entry
    text = (get_entry('vqa-rad').path and open(get_entry('vqa-rad').path).read())
    text = text.replace('  hf: flaviagiammarino/vqa-rad', '  local: ./not-prepared-yet').replace('name: vqa-rad', 'name: mine')
    (tmp_path / 'mine.yaml').write_text(text)
    entry = load_entry(tmp_path / 'mine.yaml')
    with pytest.raises(RegistryError, match=r"mine\.yaml: field 'sources\.local': folder .*not-prepared-yet does not exist"):
        resolve_source(entry, use_hf=False, settings=Settings.from_env())
    (tmp_path / 'not-prepared-yet').mkdir()
    assert resolve_source(entry, use_hf=False, settings=Settings.from_env()).kind == 'local'


@pytest.mark.usefixtures('swift_registered')
def test_local_jsonl_source_with_relative_image_paths(tmp_path, monkeypatch):
    """A prepared folder (data/<split>.jsonl + image files) registered from a user registry folder."""
    import json
    prepared = tmp_path / 'prepared'
    (prepared / 'data').mkdir(parents=True)
    (prepared / 'images').mkdir()
    rows = []
    for i, label in enumerate(['tumor', 'normal', 'tumor']):
        Image.new('RGB', (40 + i, 30), (200, 10 * i, 10)).save(prepared / 'images' / f'{i}.png')
        rows.append({'image': f'images/{i}.png', 'label': label})
    (prepared / 'data' / 'test.jsonl').write_text('\n'.join(json.dumps(r) for r in rows))
    reg = tmp_path / 'registry'
    reg.mkdir()
    (reg / 'tissue.yaml').write_text(
        'name: tissue\ntitle: Tissue\nmodality: pathology\ntask: {kind: classification}\nmetric: accuracy\n'
        'sources: {local: ../prepared}\nsplits: {test: {hub_split: test, rows: 3}}\ndefault_split: test\n'
        'columns: {image: image, question: null, answer: label}\nlabels: [tumor, normal]\n'
        'prompt: {question: "Which tissue is this? Answer with one of: {labels}."}\n'
        'native_size: {width: 40, height: 30}\nlicense: x\ncitation: y\n')
    monkeypatch.setenv('MEDRES_REGISTRY', str(reg))
    from swift_plugins.data.loader import register_datasets
    register_datasets(Settings.from_env())
    ds = load('medres/tissue:test')
    assert [r['messages'][2]['content'] for r in ds] == ['tumor', 'normal', 'tumor']
    assert ds[0]['messages'][1]['content'] == '<image>Which tissue is this? Answer with one of: tumor, normal.'
    assert ds[1]['images'][0]['path'] == str(prepared.resolve() / 'images' / '1.png')
    assert ds[1]['chat_template_kwargs']['medres']['width'] == 41


def test_data_home_placeholder_in_local_source(tmp_path, monkeypatch):
    from swift_plugins.data.registry import load_entry
    text = open(get_entry('vqa-rad').path).read()
    text = text.replace('  hf: flaviagiammarino/vqa-rad', '  local: ${MEDRES_DATA_HOME}/prepared/mine').replace(
        'name: vqa-rad', 'name: mine')
    (tmp_path / 'mine.yaml').write_text(text)
    entry = load_entry(tmp_path / 'mine.yaml')
    (tmp_path / 'home' / 'prepared' / 'mine').mkdir(parents=True)
    monkeypatch.setenv('MEDRES_DATA_HOME', str(tmp_path / 'home'))
    found = resolve_source(entry, use_hf=False, settings=Settings.from_env()).dataset_id
    assert found == str(tmp_path / 'home' / 'prepared' / 'mine')
    monkeypatch.delenv('MEDRES_DATA_HOME')
    monkeypatch.setenv('HOME', str(tmp_path / 'user'))
    with pytest.raises(RegistryError, match=r'user/\.cache/medres/prepared/mine does not exist'):
        resolve_source(entry, use_hf=False, settings=Settings.from_env())


def test_image_key_identifies_shared_images():
    from swift_plugins.data.rows import image_key
    assert image_key(b'abc') == image_key(b'abc') != image_key(b'abd')
    assert image_key('/x/y.png') == image_key('/x/../x/y.png')
