"""`medres prepare subcellular`: HPA metadata table + stain images -> medres/subcellular."""
import csv
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from swift_plugins.data.registry import get_entry
from swift_plugins.fixtures.raw_sources import HPA_COLUMNS, HPA_SIZE, build_hpa
from swift_plugins.prepare import prepare
from swift_plugins.prepare.common import PrepareError

from helpers import load
from helpers import prepared_rows as rows


def edit_table(root, change):
    path = root / 'hpa_captions.csv'
    with open(path, newline='') as f:
        table = list(csv.reader(f))
    change(table)
    with open(path, 'w', newline='') as f:
        csv.writer(f).writerows(table)


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / 'hpa'
    return root, build_hpa(root)


@pytest.mark.usefixtures('swift_registered')
def test_prepare_subcellular_split_composite_and_load(raw, data_home):
    root, facts = raw
    m = prepare('subcellular', root, test_size=3)
    out = data_home / 'prepared' / 'subcellular'
    test, train = rows(out, 'test'), rows(out, 'train')
    # The paper's rule: shuffle the table with the seed, the first rows are test.
    table = pd.read_csv(root / 'hpa_captions.csv', dtype=str, keep_default_na=False)
    shuffled = table.sample(frac=1, random_state=42)['image_id'].tolist()
    assert [r['id'] for r in test] == shuffled[:3] and [r['id'] for r in train] == shuffled[3:]
    assert m['counts'] == {'test': 3, 'train': 9} and 'seed 42' in m['split_rule']
    entry = get_entry('subcellular')
    assert set(m['labels_found']) == {r[4] for r in facts['rows']} and set(m['labels_found']) <= set(entry.labels)
    by_id = {r['id']: r for r in test + train}
    assert by_id['1001_A2_2']['localizations'] == ['Nucleoplasm', 'Cytosol']

    # Stain files (row 0), a 4-plane TIFF (row 2) and HPA's composite (row 1): same colours.
    h, w = HPA_SIZE
    for image_id in ('1000_A1_1', '1002_A3_3'):
        rgb = np.asarray(Image.open(out / by_id[image_id]['image']))
        assert rgb.shape == (h, w, 3)
        q = lambda k: rgb[(k // 2) * h // 2 + 4:(k // 2 + 1) * h // 2 - 4, (k % 2) * w // 2 + 4:(k % 2 + 1) * w // 2 - 4]  # noqa: E731
        assert q(0)[..., 0].min() > 150 and q(0)[..., 1:].max() < 60      # microtubules -> red
        assert q(1)[..., 1].min() > 150                                     # protein -> green
        assert q(2)[..., 2].min() > 150                                     # nucleus -> blue
        assert q(3).max() < 60                                              # ER (yellow) left out
        assert set(m['windows']['images'][image_id]) == {'microtubules', 'protein', 'nucleus'}
    composite = by_id['1001_A2_2']
    assert composite['image'].endswith('.jpg')
    assert (out / composite['image']).read_bytes() == (root / 'images' / '1001_A2_2_blue_red_green.jpg').read_bytes()
    assert m['md5_checked'] == 3
    assert [c['color'] for c in m['channel_mapping']] == ['red', 'green', 'blue', 'none']

    ds = load('medres/subcellular:test')
    assert [r['messages'][2]['content'] for r in ds] == [r['answer'] for r in test]
    assert ds[0]['messages'][1]['content'].startswith('<image>Which cell line') and 'U-251 MG, ' in \
        ds[0]['messages'][1]['content']


def test_small_table_gets_a_fifth_as_test(raw, tmp_path):
    root, _ = raw
    m = prepare('subcellular', root, tmp_path / 'out')
    assert m['counts']['test'] == round(0.2 * 12) and 'first 2 rows test' in m['split_rule']


def _missing_file(root, table):
    (root / f'images/{table[1][0]}_blue.tif').unlink()   # one of row 1's four stain files
    return 1, r'image file not found: images/1000_A1_1 \(nor its stain files images/1000_A1_1_blue\.\*\)'


def _label_outside(root, table):
    table[4][4] = 'Vero'
    return 4, "label 'Vero' is not in the label set of .*subcellular.yaml"


def _duplicate(root, table):
    table[6][0] = table[5][0]
    return '[56]', "duplicate id: image_id '1004_A5_2' is on rows 5, 6"


def _md5(root, table):
    table[2][9] = '0' * 32
    return 2, 'md5 of 1001_A2_2_blue_red_green.jpg is [0-9a-f]{32}, the table says 0{32}'


def _truncated(root, table):
    path = root / 'images' / '1001_A2_2_blue_red_green.jpg'
    path.write_bytes(path.read_bytes()[:300])
    table[2][9] = ''
    return 2, 'cannot decode image'


def _single_stain(root, table):
    table[1][8] = 'images/1000_A1_1_blue.tif'     # one stain has no composite meaning
    return 1, "1000_A1_1_blue.tif is a single stain, not a composite or a 4-stain file"


@pytest.mark.parametrize('breakage', [_missing_file, _label_outside, _duplicate, _md5, _truncated, _single_stain])
def test_bad_rows_error_or_skip(raw, tmp_path, breakage):
    root, _ = raw
    found = {}
    edit_table(root, lambda table: found.update(zip(('row', 'reason'), breakage(root, table))))
    with pytest.raises(PrepareError, match=rf"subcellular: hpa_captions\.csv row {found['row']} \(image_id .*"
                                           rf"{found['reason']}.*--on-error skip"):
        prepare('subcellular', root, tmp_path / 'out', test_size=3)
    assert not (tmp_path / 'out').exists()
    m = prepare('subcellular', root, tmp_path / 'out', on_error='skip', test_size=3)
    expected = 2 if breakage is _duplicate else 1
    assert m['skipped']['count'] == expected and sum(m['counts'].values()) == 12 - expected
    assert all(re.search(f'row {found["row"]} ', s['item']) for s in m['skipped']['items'])


def test_table_without_required_column(raw, tmp_path):
    root, _ = raw
    edit_table(root, lambda table: table[0].__setitem__(HPA_COLUMNS.index('cell_line'), 'cellline'))
    with pytest.raises(PrepareError, match=r"hpa_captions\.csv: missing column\(s\) \['cell_line'\]"):
        prepare('subcellular', root, tmp_path / 'out')
