"""`medres prepare cervical`: Mendeley class folders of JPEGs -> medres/cervical."""
import json
from collections import Counter

import pytest

from swift_plugins.cli.main import main
from swift_plugins.data.registry import get_entry
from swift_plugins.fixtures.raw_sources import CERVICAL_COUNTS, CERVICAL_FOLDERS, CERVICAL_SIZE, build_cervical
from swift_plugins.prepare import prepare
from swift_plugins.prepare.cervical import stratified_test
from swift_plugins.prepare.common import PrepareError

from helpers import load
from helpers import prepared_rows as rows


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / 'mendeley'
    return root, build_cervical(root)


@pytest.mark.usefixtures('swift_registered')
def test_prepare_cervical_stratified_and_load(raw, data_home, capsys):
    root, facts = raw
    (root / 'Thumbs.db').write_bytes(b'\0')
    assert main(['prepare', 'cervical', '--raw', str(root), '--test-size', '5']) == 0
    out = data_home / 'prepared' / 'cervical'
    train, test = rows(out, 'train'), rows(out, 'test')
    # The published class folders (spaces and capitals) map to the entry's labels.
    assert Counter(r['answer'] for r in train + test) == Counter(CERVICAL_COUNTS)
    assert set(json.loads((out / 'manifest.json').read_text())['class_folders']) == set(CERVICAL_FOLDERS.values())
    # 5 of 20, proportional with largest remainders: 2 + 1 + 1.25 + 0.75 -> NILM 2, LSIL 1, HSIL 1, SCC 1.
    assert Counter(r['answer'] for r in test) == {'NILM': 2, 'LSIL': 1, 'HSIL': 1, 'SCC': 1}
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['labels_found'] == get_entry('cervical').labels == ['NILM', 'LSIL', 'HSIL', 'SCC']
    assert manifest['excluded']['not_an_image_file']['items'] == ['Thumbs.db']
    # Every class folder numbers its files: equal stems get ids that include the class.
    assert {f'{label}/1' for label in CERVICAL_COUNTS} <= {r['id'] for r in train + test}
    assert manifest['file_stems_in_several_classes'] == ['1', '2', '3', '4', '5']
    assert len({r['image'] for r in train + test}) == 20
    # 8-bit RGB JPEGs are copied as downloaded, not re-encoded.
    r = test[0]
    assert (out / r['image']).read_bytes() == facts['files'][r['id']][1].read_bytes()
    assert manifest['images'] == {'copied_as_downloaded': 20, 'converted_to_png': 0}
    assert 'wrote 20 rows (train 15, test 5)' in capsys.readouterr().err

    ds = load('medres/cervical:test')
    assert sorted(x['messages'][2]['content'] for x in ds) == sorted(r['answer'] for r in test)
    assert ds[0]['messages'][1]['content'].endswith('Answer with one of: NILM, LSIL, HSIL, SCC.')
    assert ds[0]['chat_template_kwargs']['medres']['width'] == CERVICAL_SIZE[1]


def test_split_is_seeded_and_paper_sized():
    # The Mendeley counts: 200 test images keep the class shares.
    groups = {label: [f'{label}{i}' for i in range(n)] for label, n in
              {'NILM': 612, 'LSIL': 113, 'HSIL': 163, 'SCC': 74}.items()}
    test = stratified_test(groups, 200, seed=42)
    assert len(test) == 200
    assert Counter(i.rstrip('0123456789') for i in test) == {'NILM': 127, 'LSIL': 24, 'HSIL': 34, 'SCC': 15}
    assert stratified_test(groups, 200, seed=42) == test != stratified_test(groups, 200, seed=7)


@pytest.mark.parametrize('mode', ['error', 'skip'])
def test_truncated_jpeg(raw, tmp_path, mode):
    root, facts = raw
    path = facts['files']['HSIL/2'][1]
    path.write_bytes(path.read_bytes()[:400])
    if mode == 'error':
        with pytest.raises(PrepareError, match=r'cervical: High squamous intra-epithelial lesion/2\.jpg: '
                                               r'.*cannot decode image'):
            prepare('cervical', root, tmp_path / 'out', test_size=5)
        assert not (tmp_path / 'out').exists()
    else:
        m = prepare('cervical', root, tmp_path / 'out', on_error='skip', test_size=5)
        assert m['skipped']['items'][0]['item'] == 'High squamous intra-epithelial lesion/2.jpg'
        assert m['skipped']['count'] == 1
        assert sum(m['counts'].values()) == 19


@pytest.mark.parametrize('mode', ['error', 'skip'])
def test_unknown_class_folder_and_duplicate_names(raw, tmp_path, mode):
    root, facts = raw
    (root / 'ASC-US').mkdir()
    (root / 'ASC-US' / 'ASCUS_1.jpg').write_bytes(facts['files']['SCC/1'][1].read_bytes())
    # The same image extracted twice under two spellings of its class folder.
    (root / 'HSIL').mkdir()
    (root / 'HSIL' / '1.jpg').write_bytes(facts['files']['HSIL/1'][1].read_bytes())
    if mode == 'error':
        with pytest.raises(PrepareError, match=r"ASC-US/ASCUS_1\.jpg: folder 'ASC-US' is not a class folder \(label "
                                               r"outside the set"):
            prepare('cervical', root, tmp_path / 'out', test_size=5)
        (root / 'ASC-US' / 'ASCUS_1.jpg').unlink()
        with pytest.raises(PrepareError, match=r"duplicate id 'HSIL/1': 2 files share this name"):
            prepare('cervical', root, tmp_path / 'out', test_size=5)
    else:
        m = prepare('cervical', root, tmp_path / 'out', on_error='skip', test_size=5)
        reasons = [s['reason'] for s in m['skipped']['items']]
        assert len(reasons) == 3 and sum('duplicate id' in r for r in reasons) == 2
        assert sum(m['counts'].values()) == 19
