"""`medres prepare compound`: BBBC021 TIFF triplets + CSVs -> medres/compound."""
import csv
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from swift_plugins.cli.main import main
from swift_plugins.data.registry import get_entry
from swift_plugins.fixtures.raw_sources import (
    BBBC_MOA,
    BBBC_PLATES,
    BBBC_SIZE,
    build_bbbc021,
    extract_zips,
    twelve_bit_ramp,
)
from swift_plugins.prepare import prepare
from swift_plugins.prepare.common import PrepareError

from helpers import load
from helpers import prepared_rows as rows


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / 'BBBC021'
    facts = build_bbbc021(root)
    return root, facts


@pytest.mark.usefixtures('swift_registered')
def test_prepare_compound_by_compound_and_load_with_ms_swift(raw, data_home):
    root, facts = raw
    assert main(['prepare', 'compound', '--raw', str(root)]) == 0
    out = data_home / 'prepared' / 'compound'
    manifest = json.loads((out / 'manifest.json').read_text())
    train, test = rows(out, 'train'), rows(out, 'test')
    assert len(train) + len(test) == facts['fields'] == 21
    assert manifest['excluded']['no_moa']['count'] == facts['no_moa_fields'] == 3
    assert all('acyclovir' in item for item in manifest['excluded']['no_moa']['items'])
    # The MoA CSV spells 0.003 as 0.003000, the image CSV as 3e-3: the join on the value still finds it.
    assert sum(r['compound'] == 'docetaxel' for r in train + test) == len(BBBC_PLATES)
    # Real file names carry no plate prefix: ids come from the CSV's plate and well.
    assert {r['id'] for r in train + test} >= {f'{p}_B02_s1' for p in BBBC_PLATES}
    entry = get_entry('compound')
    assert {r['answer'] for r in train + test} == set(facts['moas']) and set(facts['moas']) <= set(entry.labels)

    # Split by compound: no compound in both splits; DMSO (one compound) split by plate.
    treated = lambda rs: {r['compound'] for r in rs if r['compound'] != 'DMSO'}   # noqa: E731
    assert not treated(train) & treated(test)
    dmso_plates = lambda rs: {r['plate'] for r in rs if r['compound'] == 'DMSO'}   # noqa: E731
    assert not dmso_plates(train) & dmso_plates(test) and dmso_plates(test)
    for moa in facts['moas']:
        if moa != 'DMSO':   # two compounds per MoA: one each side
            assert len(manifest['test_compounds'][moa]) == 1
            assert {r['answer'] for r in test} >= {moa} and {r['answer'] for r in train} >= {moa}
    assert manifest['split_seed'] == 42 and 'by compound' in manifest['split_rule']
    assert [c['source'] for c in manifest['channel_mapping']] == ['Actin', 'Tubulin', 'DAPI']

    # 16-bit DAPI (a 12-bit ramp in every field) is windowed per plate, not clipped.
    plate_dapi = np.concatenate([twelve_bit_ramp(BBBC_SIZE).ravel()] * len(BBBC_MOA))   # 7 labelled fields
    for plate in BBBC_PLATES:
        assert manifest['windows']['plates'][plate]['DNA'] == pytest.approx(list(np.percentile(plate_dapi, (0.1, 99.9))))
    blue = np.asarray(Image.open(out / test[0]['image']))[..., 2].ravel().astype(int)
    assert len(np.unique(blue)) > 200 and np.all(np.diff(blue) >= 0)
    # Plates were stained differently: each has its own actin window.
    actin = [manifest['windows']['plates'][p]['F-actin'][0] for p in BBBC_PLATES]
    assert actin == sorted(actin) and actin[0] < actin[-1] - 500
    assert manifest['files'][test[0]['image']]['sha256'] and manifest['counts'] == {'train': 11, 'test': 10}

    ds = load('medres/compound:test')
    assert len(ds) == len(test)
    user = ds[0]['messages'][1]['content']
    assert user.startswith('<image>This fluorescence microscopy image') and 'Microtubule stabilizers, ' in user
    assert ds[0]['messages'][2]['content'] in entry.labels
    meta = ds[0]['chat_template_kwargs']['medres']
    assert (meta['width'], meta['height']) == (BBBC_SIZE[1], BBBC_SIZE[0])


def test_split_by_plate_keeps_plates_apart(raw, tmp_path):
    root, _ = raw
    m = prepare('compound', root, tmp_path / 'out', split_by='plate', test_fraction=0.25)
    train, test = rows(tmp_path / 'out', 'train'), rows(tmp_path / 'out', 'test')
    assert {r['plate'] for r in test} == set(m['test_plates']) and len(m['test_plates']) == 1
    assert not {r['plate'] for r in train} & {r['plate'] for r in test}


def _break_first_dapi(root, facts, how):
    dapi_name, path_name = facts['rows'][0][2], facts['rows'][0][3]
    target = root / path_name.split('/')[1] / dapi_name
    if how == 'missing':
        target.unlink()
    else:   # a TIFF header with its strips cut off
        target.write_bytes(target.read_bytes()[:200])
    return facts['rows'][0][8], facts['rows'][0][9]


@pytest.mark.parametrize('how, reason', [('unreadable', 'unreadable TIFF'), ('missing', 'image file not found')])
def test_bad_tiff_error_or_skip(raw, tmp_path, how, reason):
    root, facts = raw
    plate, well = _break_first_dapi(root, facts, how)
    with pytest.raises(PrepareError, match=rf'compound: BBBC021_v1_image\.csv row 1 \({plate} {well}\).*{reason}'):
        prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)
    assert not (tmp_path / 'out').exists()

    m = prepare('compound', root, tmp_path / 'out', on_error='skip', split_by='compound', test_fraction=0.25)
    assert m['skipped']['count'] == 1 and reason in m['skipped']['items'][0]['reason']
    assert sum(m['counts'].values()) == facts['fields'] - 1


def test_label_outside_the_set_and_duplicate_field(raw, tmp_path):
    root, facts = raw
    moa_csv = root / 'BBBC021_v1_moa.csv'
    text = moa_csv.read_text().replace('Actin disruptors', 'Actin poisons')
    moa_csv.write_text(text)
    with pytest.raises(PrepareError, match=r"row \d+ .*label 'Actin poisons' \(from BBBC021_v1_moa\.csv\) is not in "
                                           r'the label set of .*compound\.yaml'):
        prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)
    m = prepare('compound', root, tmp_path / 'out', on_error='skip', split_by='compound', test_fraction=0.25)
    n_actin = 2 * len(BBBC_PLATES)
    assert m['skipped']['count'] == n_actin and 'Actin disruptors' not in m['labels_found']

    moa_csv.write_text(text.replace('Actin poisons', 'Actin disruptors'))
    image_csv = root / 'BBBC021_v1_image.csv'
    lines = image_csv.read_text().splitlines()
    image_csv.write_text('\n'.join(lines + [lines[1]]) + '\n')   # the first field listed twice
    with pytest.raises(PrepareError, match=r'duplicate id: field \S+ is on 2 rows'):
        prepare('compound', root, tmp_path / 'out2', split_by='compound', test_fraction=0.25)
    m = prepare('compound', root, tmp_path / 'out2', on_error='skip', split_by='compound', test_fraction=0.25)
    assert m['skipped']['count'] == 2 and sum(m['counts'].values()) == facts['fields'] - 1


def test_missing_csv_is_a_clear_error(raw, tmp_path):
    root, _ = raw
    (root / 'BBBC021_v1_moa.csv').unlink()
    with pytest.raises(PrepareError, match=r'no file named BBBC021_v1_moa\.csv'):
        prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)
    with open(root / 'BBBC021_v1_moa.csv', 'w', newline='') as f:
        csv.writer(f).writerows([['compound', 'dose', 'moa'], ['taxol', '0.3', 'Microtubule stabilizers']])
    with pytest.raises(PrepareError, match=r"BBBC021_v1_moa\.csv: missing column\(s\) \['concentration'\]"):
        prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)


def test_published_layout_zips_and_week_folders(tmp_path):
    """The plate zips unpack to <plate>/; a zip left packed is named; Week<N>/<plate>/ works too."""
    root = tmp_path / 'BBBC021'
    facts = build_bbbc021(root, extract=False)
    names = [n for n in zipfile.ZipFile(root / 'BBBC021_v1_images_Week1_22123.zip').namelist()]
    assert all(n.startswith('Week1_22123/Week1_150607_') and '_s1_w' in n for n in names)
    assert all(n.startswith('Week2_24121/') and n.split('/')[1][0] in 'BCDEFG'
               for n in zipfile.ZipFile(root / 'BBBC021_v1_images_Week2_24121.zip').namelist())
    with pytest.raises(PrepareError, match=r'3 plate zip\(s\) not extracted \(BBBC021_v1_images_Week1_22123\.zip'):
        prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)
    extract_zips(root)
    (root / 'Week2').mkdir()
    (root / 'Week2_24121').rename(root / 'Week2' / 'Week2_24121')   # the CSV's own PathName
    m = prepare('compound', root, tmp_path / 'out', split_by='compound', test_fraction=0.25)
    assert sum(m['counts'].values()) == facts['fields']
