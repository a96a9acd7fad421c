"""`medres prepare subcellular`: the paper's captions.json, HPA's kaggle_2021.tsv, Kaggle 2018 -> medres/subcellular."""
import json
import random

import numpy as np
import pytest
from PIL import Image

from swift_plugins.data.registry import get_entry, load_registry
from swift_plugins.errors import DataError
from swift_plugins.fixtures.raw_sources import (
    HPA_SIZE,
    build_hpa_2021,
    build_hpa_captions,
    build_kaggle_2018,
    gzipped_tiff,
    hpa_stains,
)
from swift_plugins.prepare import prepare
from swift_plugins.prepare.common import PrepareError
from swift_plugins.prepare.subcellular import CAPTION_TEMPLATE, paper_order, paper_split
from swift_plugins.vocabulary import Env

from helpers import load
from helpers import prepared_rows as rows

PAPER_EVAL_QUESTION = 'Describe the cell line and subcellular localizations shown in this image.'
PAPER_TRAIN_QUESTION = 'Provide a description of the given image.'


def quadrant_colours(rgb):
    """Each fixture stain is bright in its own quadrant: red, green, blue, (yellow left out)."""
    h, w = HPA_SIZE
    q = lambda k: rgb[(k // 2) * h // 2 + 4:(k // 2 + 1) * h // 2 - 4, (k % 2) * w // 2 + 4:(k % 2 + 1) * w // 2 - 4]  # noqa: E731
    assert q(0)[..., 0].min() > 150 and q(0)[..., 1:].max() < 60      # microtubules -> red
    assert q(1)[..., 1].min() > 150                                     # protein -> green
    assert q(2)[..., 2].min() > 150                                     # nucleus -> blue
    assert q(3).max() < 60                                              # ER (yellow) left out


@pytest.fixture
def captions(tmp_path):
    root = tmp_path / 'hpa'
    return root, build_hpa_captions(root)


def test_paper_split_is_pythons_random_shuffle():
    """The paper's script: random.seed(42); random.shuffle(entries); the first 2,000 are test."""
    entries = [f'e{i}' for i in range(5000)]
    expected = list(entries)
    random.seed(42)
    random.shuffle(expected)
    split = paper_split(len(entries), 2000, 42)
    assert {e for e, s in zip(entries, split) if s == 'test'} == set(expected[:2000])
    # A numpy / pandas permutation with the same seed is another split (~40% overlap by chance).
    numpy_test = set(np.asarray(entries)[np.random.RandomState(42).permutation(5000)[:2000]])
    assert len(numpy_test & set(expected[:2000])) < 1000


@pytest.mark.usefixtures('swift_registered')
def test_captions_json_split_task_and_load(captions, data_home, capsys, monkeypatch):
    root, facts = captions
    entries = facts['entries']
    m = prepare('subcellular', root, test_size=4)
    out = data_home / 'prepared' / 'subcellular'
    test, train = rows(out, 'test'), rows(out, 'train')

    # The split equals a direct random.shuffle of the entries in file order.
    expected = list(entries)
    random.seed(42)
    random.shuffle(expected)
    assert {r['id'] for r in test} == {e['image_id'] for e in expected[:4]}
    assert {r['id'] for r in train} == {e['image_id'] for e in expected[4:]}
    assert m['layout'] == 'captions' and m['counts'] == {'test': 4, 'train': 10}
    assert 'random.seed(42); random.shuffle() of all 14 entries of captions.json' in m['split_rule']

    # Cell lines normalised through the entry's synonyms; an unknown line kept and reported.
    by_id = {r['id']: r for r in test + train}
    given = {e['image_id']: e['cell_line'] for e in entries}
    assert {by_id[i]['cell_line'] for i in given if given[i] == 'U2OS'} == {'U-2 OS'}
    assert {by_id[i]['cell_line'] for i in given if given[i] == 'A-549'} == {'A549'}
    assert {by_id[i]['cell_line'] for i in given if given[i] == 'HEK293'} == {'HEK 293'}
    assert m['cell_lines_unknown'] == {'Vero E6': 2} and 'Vero E6' in capsys.readouterr().err
    assert m['cell_lines_normalised']['U2OS -> U-2 OS'] == 2
    assert set(m['label_distribution']['test']) <= {r['cell_line'] for r in test}
    # Captions as the file has them; localizations split into a list.
    e0 = entries[0]
    assert by_id[e0['image_id']]['caption'] == e0['caption']
    assert by_id[e0['image_id']]['localizations'] == e0['localizations'].split(';')
    assert by_id[e0['image_id']]['protein'] == e0['protein'] and m['caption_source'].startswith('the captions.json')

    # Stain files, a 4-plane TIFF and HPA's composite: same colours; the composite copied as is.
    for e in entries[:3]:
        quadrant_colours(np.asarray(Image.open(out / by_id[e['image_id']]['image']).convert('RGB')))
    composite = by_id[entries[1]['image_id']]
    assert (out / composite['image']).read_bytes() == (root / entries[1]['file_path']).read_bytes()
    assert m['md5_checked'] == sum(1 for e in entries if e['md5_hash'])
    assert [c['color'] for c in m['channel_mapping']] == ['red', 'green', 'blue', 'none']

    # The paper's task: trained on the captions, tested with its evaluation question; the scored
    # facts travel with the row.
    ds = load('medres/subcellular:test')
    assert [r['messages'][1]['content'] for r in ds] == ['<image>' + PAPER_EVAL_QUESTION] * 4
    assert sorted(r['messages'][2]['content'] for r in ds) == sorted(r['caption'] for r in test)
    meta = ds[0]['chat_template_kwargs']['medres']
    gold = next(r for r in test if r['caption'] == ds[0]['messages'][2]['content'])
    assert meta['targets'] == {'cell_line': gold['cell_line'], 'localizations': gold['localizations']}
    tr = load('medres/subcellular:train')
    assert tr[0]['messages'][1]['content'] == '<image>' + PAPER_TRAIN_QUESTION
    # The closed classification reads the same folder; a line outside its labels stops it, naming the
    # row, unless bad rows are skipped.
    unknown = [k for k, r in enumerate(test) if r['cell_line'] == 'Vero E6']
    assert unknown
    with pytest.raises(DataError, match=rf"subcellular-cell-line split=test row={unknown[0]}: label 'Vero E6'"):
        load('medres/subcellular-cell-line:test')
    monkeypatch.setenv(Env.BAD_ROWS, 'skip')
    cls = load('medres/subcellular-cell-line:test')
    assert cls[0]['messages'][1]['content'].startswith('<image>Which cell line')
    assert sorted(r['messages'][2]['content'] for r in cls) == sorted(r['cell_line'] for r in test
                                                                     if r['cell_line'] != 'Vero E6')


def test_small_captions_file_gets_a_fifth_as_test(captions, tmp_path):
    root, _ = captions
    m = prepare('subcellular', root, tmp_path / 'out')
    assert m['counts']['test'] == round(0.2 * 14) and 'the first 3 (in that order' in m['split_rule']


def test_a_jsonl_table_keeps_list_localizations(captions, tmp_path):
    root, facts = captions
    (root / 'captions.json').unlink()
    with open(root / 'subcellular.jsonl', 'w') as f:
        for e in facts['entries']:
            f.write(json.dumps(e | {'localizations': e['localizations'].split(';')}) + '\n')
    m = prepare('subcellular', root, tmp_path / 'out', test_size=4)
    got = {r['id']: r['localizations'] for s in ('train', 'test') for r in rows(tmp_path / 'out', s)}
    assert m['layout'] == 'captions' and m['table'] == 'subcellular.jsonl'
    assert all(got[e['image_id']] == e['localizations'].split(';') for e in facts['entries'])


def test_hpa_2021_public_list(tmp_path):
    root = tmp_path / 'hpa2021'
    facts = build_hpa_2021(root)
    m = prepare('subcellular', root, tmp_path / 'out', test_size=2)
    out = tmp_path / 'out'
    got = {r['id']: r for s in ('train', 'test') for r in rows(out, s)}
    assert m['layout'] == 'hpa_2021' and set(got) == set(facts['downloaded'])
    assert m['excluded']['not_downloaded']['count'] == 12 - len(facts['downloaded'])
    # Split: the paper's rule over the downloaded rows in file order.
    order = sorted(facts['downloaded'], key=facts['downloaded'].get)
    expected = list(order)
    random.Random(42).shuffle(expected)
    assert {i for i, r in got.items() if r['image'].startswith('images/test/')} == set(expected[:2])
    # Codes through the entry's hpa_2021 table; a template caption; 16-bit gzipped TIFFs read through.
    codes = get_entry('subcellular').codes['hpa_2021']
    first = got['10000_900_A1_1']   # row 0: Label "0,16", U-2 OS, gzipped TIFFs
    assert first['localizations'] == [codes[0], codes[16]] == ['Nucleoplasm', 'Cytosol']
    assert first['caption'] == CAPTION_TEMPLATE.format(cell_line='U-2 OS', localizations='Nucleoplasm, Cytosol')
    assert first['cell_line'] == 'U-2 OS' and m['caption_source'].startswith('template')
    for r in got.values():   # tinted JPEG stains (8-bit) and gzipped 16-bit TIFFs: same colours
        quadrant_colours(np.asarray(Image.open(out / r['image'])))
    assert '10000_900_A1_1' in m['windows']['images'] and '10001_901_B2_2' not in m['windows']['images']


def test_hpa_2021_label_names_and_partial_download(tmp_path):
    root = tmp_path / 'hpa2021'
    facts = build_hpa_2021(root)
    text = (root / 'kaggle_2021.tsv').read_text().replace('"0,16"', '"Nucleoplasm,Vesicles"')
    (root / 'kaggle_2021.tsv').write_text(text)
    next(root.rglob('10001_901_B2_2_green.jpg')).unlink()
    with pytest.raises(PrepareError, match=r"kaggle_2021\.tsv row 2 \(Image '.*/10001/901_B2_2'\): stain file\(s\) not "
                                           r"found: 10001_901_B2_2_green\.\*"):
        prepare('subcellular', root, tmp_path / 'out', test_size=2)
    m = prepare('subcellular', root, tmp_path / 'out', test_size=2, on_error='skip')
    got = {r['id']: r for s in ('train', 'test') for r in rows(tmp_path / 'out', s)}
    assert got['10000_900_A1_1']['localizations'] == ['Nucleoplasm', 'Vesicles']
    assert m['skipped']['count'] == 1 and len(got) == len(facts['downloaded']) - 1


def test_kaggle_2018_layout(tmp_path):
    root = tmp_path / 'kaggle2018'
    facts = build_kaggle_2018(root)
    m = prepare('subcellular', root, tmp_path / 'out', test_size=2)
    got = {r['id']: r for s in ('train', 'test') for r in rows(tmp_path / 'out', s)}
    assert m['layout'] == 'kaggle_2018' and m['table'] == 'train.csv' and len(got) == len(facts['rows'])
    first_id, target = facts['rows'][0]
    assert target == '0 25' and got[first_id]['localizations'] == ['Nucleoplasm', 'Cytosol']
    assert got[first_id]['cell_line'] == '' and got[first_id]['caption'].startswith(
        'Immunofluorescence microscopy image of human cells.')
    # 8-bit PNG stains are composed as stored (no windows).
    assert m['windows']['images'] == {} and m['images'] == {'composed from stain files': len(facts['rows'])}


def _missing_file(root, entries):
    (root / f'{entries[0]["file_path"]}_blue.tif').unlink()
    return 1, (r'image file not found: images/900_A1_1 \(nor its stain files images/900_A1_1_blue\.\*\)')


def _duplicate(root, entries):
    entries[6]['image_id'] = entries[5]['image_id']
    return '[67]', "duplicate id: '905_F6_3' is on entries 6, 7"


def _md5(root, entries):
    entries[1]['md5_hash'] = '0' * 32
    return 2, 'md5 of 901_B2_2_blue_red_green.jpg is [0-9a-f]{32}, the table says 0{32}'


def _truncated(root, entries):
    path = root / entries[1]['file_path']
    path.write_bytes(path.read_bytes()[:300])
    entries[1]['md5_hash'] = ''
    return 2, 'cannot decode image'


def _single_stain(root, entries):
    entries[0]['file_path'] += '_blue.tif'     # one stain has no composite meaning
    return 1, '900_A1_1_blue.tif is a single stain, not a composite or a 4-stain file'


def _corrupt_gzip(root, entries):
    stains = hpa_stains(np.random.default_rng(1))
    (root / f'{entries[0]["file_path"]}_red.tif').unlink()
    gzipped_tiff(root / f'{entries[0]["file_path"]}_red.tif.gz', stains['red'])
    path = root / f'{entries[0]["file_path"]}_red.tif.gz'
    path.write_bytes(path.read_bytes()[:40])
    return 1, 'cannot decompress'


@pytest.mark.parametrize('breakage', [_missing_file, _duplicate, _md5, _truncated, _single_stain, _corrupt_gzip])
def test_bad_entries_error_or_skip(captions, tmp_path, breakage):
    root, facts = captions
    entries = facts['entries']
    row, reason = breakage(root, entries)
    (root / 'captions.json').write_text(json.dumps(entries))
    with pytest.raises(PrepareError, match=rf"subcellular: captions\.json entry {row} \(image_id .*{reason}.*--on-error skip"):
        prepare('subcellular', root, tmp_path / 'out', test_size=4)
    assert not (tmp_path / 'out').exists()
    m = prepare('subcellular', root, tmp_path / 'out', on_error='skip', test_size=4)
    expected = 2 if breakage is _duplicate else 1
    assert m['skipped']['count'] == expected and sum(m['counts'].values()) == 14 - expected
    # The paper's order, with test the first 4 usable entries in it: test keeps its size, the skipped
    # entry's place goes to the next entry of the shuffle.
    skipped = {int(s['item'].split()[2]) for s in m['skipped']['items']}
    rank = paper_order(14, 42)
    usable = sorted((r, e['image_id']) for n, (e, r) in enumerate(zip(entries, rank), start=1) if n not in skipped)
    assert [r['id'] for r in rows(tmp_path / 'out', 'test')] == [i for _, i in usable[:4]]
    assert m['counts']['test'] == 4


def test_which_table(captions, tmp_path):
    root, _ = captions
    (root / 'train.csv').write_text('Id,Target\nx,0\n')
    with pytest.raises(PrepareError, match=r'2 tables in known layouts \(captions\.json, train\.csv\); name one with '
                                           r'--table'):
        prepare('subcellular', root, tmp_path / 'out')
    assert prepare('subcellular', root, tmp_path / 'out', table='captions.json', test_size=4)['layout'] == 'captions'
    gene_only = tmp_path / 'genes'
    gene_only.mkdir()
    (gene_only / 'subcellular_location.tsv').write_text('Gene\tGene name\tReliability\tMain location\nENSG1\tX\tEnhanced\t'
                                                        'Nucleoplasm\n')
    with pytest.raises(PrepareError, match=r"no table in a known layout .*subcellular_location\.tsv is HPA's per-gene"):
        prepare('subcellular', gene_only, tmp_path / 'out2')
    cut = tmp_path / 'cut'
    cut.mkdir()
    (cut / 'captions.csv').write_text('image_id,cellline,file_path\n1,HeLa,x\n')
    with pytest.raises(PrepareError, match=r"captions\.csv: missing column\(s\) \['cell_line'\] of the captions layout"):
        prepare('subcellular', cut, tmp_path / 'out3')


def test_entries_agree_on_cell_lines():
    """The caption entry and the classification entry know the same lines (one list, checked)."""
    entries = load_registry()
    assert entries['subcellular'].labels == entries['subcellular-cell-line'].labels
    assert entries['subcellular'].task.targets == {'mention_accuracy': 'cell_line', 'mention_macro_recall': 'localizations'}
    assert entries['subcellular'].splits['test'].question == PAPER_EVAL_QUESTION
    assert entries['subcellular'].prompt.question == PAPER_TRAIN_QUESTION


def test_an_edited_synonym_rebuilds(captions, tmp_path, monkeypatch):
    """The entry's synonyms decide the rows' cell lines: editing them makes the next run rebuild."""
    import yaml

    from swift_plugins.data.registry import BUILTIN_DIR
    from swift_plugins.settings import Settings
    root, _ = captions
    assert prepare('subcellular', root, tmp_path / 'out', test_size=4)['cell_lines_unknown'] == {'Vero E6': 2}
    assert prepare('subcellular', root, tmp_path / 'out', test_size=4).get('up_to_date')
    user = tmp_path / 'registry'
    user.mkdir()
    entry = yaml.safe_load((BUILTIN_DIR / 'subcellular.yaml').read_text())
    entry['labels'].append('Vero')
    entry['synonyms']['Vero'] = ['Vero E6']
    (user / 'subcellular.yaml').write_text(yaml.safe_dump(entry))
    m = prepare('subcellular', root, tmp_path / 'out', test_size=4, settings=Settings(registry_dirs=(user,)))
    assert not m.get('up_to_date') and m['cell_lines_unknown'] == {} and m['cell_lines_normalised']['Vero E6 -> Vero'] == 2
