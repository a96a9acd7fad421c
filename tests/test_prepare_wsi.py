"""`medres prepare wsi`: WSI-VQA json + pyramidal slides -> medres/wsi."""

import numpy as np
import pytest
import tifffile
from PIL import Image

import swift_plugins.prepare.wsi as wsi_vqa
from swift_plugins.data.slides import _choose
from swift_plugins.fixtures.raw_sources import WSI_LEVEL0, build_wsi_vqa, write_svs
from swift_plugins.prepare import prepare
from swift_plugins.prepare.common import PrepareError
from swift_plugins.prepare.wsi import shuffle_options

from helpers import load
from helpers import prepared_rows as rows


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / 'wsi'
    return root, build_wsi_vqa(root)


@pytest.mark.usefixtures('swift_registered')
def test_prepare_wsi_renders_each_slide_once_and_loads(raw, data_home, monkeypatch, capsys):
    root, facts = raw
    calls = []
    real = wsi_vqa.render_slide
    monkeypatch.setattr(wsi_vqa, 'render_slide', lambda path, *a, **k: calls.append(path.name) or real(path, *a, **k))
    # One worker: the render calls are counted in this process (worker processes count their own).
    m = prepare('wsi', root, downsample=0.25, max_pixels=12_000_000, workers=1)
    out = data_home / 'prepared' / 'wsi'
    split_rows = {s: rows(out, s) for s in ('train', 'validation', 'test')}
    # Closed items only: 2 cases x 4 per split (the open ones, the off-choice one and the repeat excluded).
    assert m['counts'] == {'train': 8, 'validation': 8, 'test': 8}
    excluded = m['excluded']
    assert excluded['answer_not_in_choices']['items'][0]['Answer'] == 'grade 3.'
    assert excluded['open_question']['count'] == 6 and excluded['repeated_item']['count'] == 1
    assert excluded['not_a_DX1_slide']['items'] == ['slides/TCGA-A1-A0SF-01A-01-TS1.0000.svs']
    assert "excluded 1 item(s) whose Answer is not among their Choices" in capsys.readouterr().err
    # As in the real files, one case is in both val and test.
    assert m['cases_in_more_than_one_split'] == ['TCGA-D8-A73U']

    # One render per case, every question of the case (in any split) points at it.
    assert sorted(calls) == sorted(p.name for p in facts['slides'].values())
    pngs = sorted(p.name for p in (out / 'images' / 'slides').iterdir())
    assert pngs == sorted(f'{c}.png' for c in facts['slides'])
    for split_list in split_rows.values():
        for r in split_list:
            assert r['image'] == f'images/slides/{r["case_id"]}.png' and r['answer'] in r['choices']
    assert m['renders']['TCGA-D8-A73U']['questions'] == 8
    # An Aperio-shaped slide: level 1 (4x) of (1, 4, 16) is 0.25x of level 0, within budget: taken as stored.
    render = m['renders']['TCGA-A1-A0SF']
    assert render['level'] == 1 and render['levels'] == 3 and render['resized'] is False
    assert Image.open(out / 'images/slides/TCGA-A1-A0SF.png').size == (WSI_LEVEL0[1] // 4, WSI_LEVEL0[0] // 4)

    # Options: shuffled per item with the recorded seed, verbatim; the file's order kept beside them.
    assert m['option_order']['shuffled'] and m['option_order']['seed'] == 42
    for split, split_list in split_rows.items():
        for r in split_list:
            assert r['choices'] == shuffle_options(r['choices_original'], 42, r['id'])
            assert sorted(r['choices']) == sorted(r['choices_original'])
    test_pos = m['answer_positions']['test']
    assert test_pos['original'] == {'A': 2, 'B': 6} and sum(test_pos['shown'].values()) == 8
    assert test_pos['shown'] == m['label_distribution']['test'] != test_pos['original']

    ds = load('medres/wsi:test')
    row = next(r for r in split_rows['test'] if r['question'].startswith('what is the estrogen'))
    user = ds[split_rows['test'].index(row)]['messages'][1]['content']
    assert user == ('<image>what is the estrogen and progesterone receptor status?\nOptions:\n' + '\n'.join(row['choices'])
                    + '\nAnswer with one of the options, word for word.')
    assert ds[split_rows['test'].index(row)]['messages'][2]['content'] == row['answer']
    # The options travel with the row, for the scorer, in the order shown.
    assert ds[split_rows['test'].index(row)]['chat_template_kwargs']['medres']['choices'] == row['choices']


def test_keep_option_order_and_seed(raw, tmp_path):
    root, facts = raw
    m = prepare('wsi', root, tmp_path / 'kept', downsample=0.25, max_pixels=12_000_000, keep_option_order=True)
    kept = rows(tmp_path / 'kept', 'test')
    assert all(r['choices'] == r['choices_original'] for r in kept) and m['option_order']['seed'] is None
    assert m['label_distribution']['test'] == {'A': 2, 'B': 6}
    prepare('wsi', root, tmp_path / 'other', downsample=0.25, max_pixels=12_000_000, option_seed=7)
    other = rows(tmp_path / 'other', 'test')
    assert [r['choices'] for r in other] == [shuffle_options(r['choices_original'], 7, r['id']) for r in other]
    assert [r['choices'] for r in other] != [shuffle_options(r['choices_original'], 42, r['id']) for r in other]
    # An item's order depends on the seed and its id only, never on the other items.
    assert shuffle_options(['a', 'b', 'c', 'd'], 42, 'WsiVQA_test.json#3') == shuffle_options(
        ['a', 'b', 'c', 'd'], 42, 'WsiVQA_test.json#3')


def test_pixel_budget_resamples_from_the_next_level_up(raw, tmp_path):
    root, _ = raw
    m = prepare('wsi', root, tmp_path / 'out', downsample=0.25, max_pixels=5000)
    render = m['renders']['TCGA-BH-A0BV']
    w, h = render['render_size']
    assert w * h <= 5000 and render['resized'] and render['level'] == 1   # 128x96 level, resampled down
    assert abs(w / h - WSI_LEVEL0[1] / WSI_LEVEL0[0]) < 0.05
    # Unit: nearest level in log scale; the coarsest level still large enough when over budget.
    dims, ds = [(4000, 3000), (1000, 750), (250, 187)], [1.0, 4.0, 16.0]
    assert _choose(dims, ds, 0.25, 10**7) == (1, (1000, 750), False)
    assert _choose(dims, ds, 0.05, 10**7) == (2, (250, 187), False)
    assert _choose(dims, ds, 0.25, 100_000) == (1, (365, 273), True)


def _flat_slide(root, facts):
    path = facts['slides']['TCGA-BH-A0BV']
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8), photometric='rgb')
    return 'case TCGA-BH-A0BV', r'not a pyramidal slide \(a single 64x64 level\)', 4


def _corrupt_slide(root, facts):
    path = facts['slides']['TCGA-BH-A0BV']
    path.write_bytes(b'II*\x00' + b'\x00' * 64)
    return 'case TCGA-BH-A0BV', 'unreadable slide', 4


def _missing_slide(root, facts):
    facts['slides']['TCGA-BH-A0BV'].unlink()
    return 'case TCGA-BH-A0BV', 'slide file not found: no DX1 slide named TCGA-BH-A0BV', 4


def _duplicate_slide(root, facts):
    write_svs(root / 'slides' / 'TCGA-BH-A0BV-01Z-00-DX1.COPY.svs')
    return 'case TCGA-BH-A0BV', 'duplicate id: 2 DX1 slides for this case', 4


@pytest.mark.parametrize('breakage', [_flat_slide, _corrupt_slide, _missing_slide, _duplicate_slide])
def test_bad_slides_error_or_skip(raw, tmp_path, breakage):
    root, facts = raw
    item, reason, questions = breakage(root, facts)
    with pytest.raises(PrepareError, match=rf'wsi: {item}: .*{reason}'):
        prepare('wsi', root, tmp_path / 'out', downsample=0.25, max_pixels=12_000_000)
    assert not (tmp_path / 'out').exists()
    m = prepare('wsi', root, tmp_path / 'out', on_error='skip', downsample=0.25, max_pixels=12_000_000)
    assert m['skipped']['items'] == [{'item': item, 'reason': m['skipped']['items'][0]['reason'],
                                      'questions': questions}]
    assert m['counts']['test'] == 4 and m['counts']['train'] == 8   # one of the two test cases is gone


def test_python_api_fills_the_converters_flag_defaults(raw, tmp_path):
    """`prepare('wsi', raw)` without options builds what `medres prepare wsi` with no flags builds."""
    from swift_plugins.data.slides import DEFAULT_DOWNSAMPLE, DEFAULT_MAX_PIXELS
    from swift_plugins.vocabulary import PAPER_SEED
    root, _ = raw
    m = prepare('wsi', root, tmp_path / 'out', workers=1)
    assert m['counts'] == {'train': 8, 'validation': 8, 'test': 8}
    options = m['options']
    assert (options['downsample'], options['max_pixels'], options['option_seed'], options['keep_option_order']) == \
        (DEFAULT_DOWNSAMPLE, DEFAULT_MAX_PIXELS, PAPER_SEED, False)
    with pytest.raises(PrepareError, match="no converter for 'wsi-vqa'.*cervical"):
        prepare('wsi-vqa', root, tmp_path / 'other')
