"""Caption metrics (the paper's Subcellular scores): cell line named first, localization macro recall."""
import json
import math
import re
from collections import defaultdict

import pytest

from swift_plugins.data.registry import get_entry
from swift_plugins.eval.caption_metrics import MentionFinder, macro_recall_ci
from swift_plugins.eval.predictions import Prediction, read_predictions
from swift_plugins.eval.scoring import compare_rows, score_predictions
from swift_plugins.fixtures.raw_sources import build_hpa_captions
from swift_plugins.prepare import prepare

from helpers import load, run_medres


def pred(i, response, cell_line, localizations, image_key=None):
    return Prediction(id=f'subcellular/test/{i}', gold='a caption', response=response, image_key=image_key or f'img{i}',
                      choices=None, line=i + 1, targets={'cell_line': cell_line, 'localizations': localizations})


def paper_scores(items):
    """The paper's evaluation script (convert_subcellular / eval: regex over the test file's values)."""
    lines = {it['cell_line'] for it in items}
    locs = {x for it in items for x in it['localizations']}
    hits, counts, right = defaultdict(int), defaultdict(int), 0
    for it in items:
        # Longest first where two start at one place: the script's set order is arbitrary.
        pattern = '|'.join(map(re.escape, sorted(lines, key=len, reverse=True)))
        found = re.findall(f'(?i)({pattern})', it['text'])
        right += (found[0].upper() if found else '') == it['cell_line'].upper()
        predicted = [x for x in locs if re.search(f'(?i){re.escape(x)}', it['text'])]
        for x in set(it['localizations']):
            counts[x] += 1
            hits[x] += x in predicted
    return 100 * right / len(items), 100 * sum(hits[x] / counts[x] for x in counts) / len(counts)


TEXTS = [
    ('These HeLa cells show the protein in the nucleoplasm and cytosol.', 'HeLa', ['Nucleoplasm', 'Cytosol']),
    ('A549 cells; staining of the Nucleoli fibrillar center.', 'A549', ['Nucleoli', 'Nucleoli fibrillar center']),
    ('U-251 MG, then HeLa: mitochondria.', 'HeLa', ['Mitochondria']),
    ('Cytosolic staining in PC-3 cells.', 'PC-3', ['Cytosol']),
    ('no cell line named; plasma membrane', 'A549', ['Plasma membrane', 'Cytosol']),
    ('HEL cells, nucleoplasm', 'HEL', ['Nucleoplasm']),
    ('shell-like nucleoli in HeLa', 'U-251 MG', ['Nucleoli']),
]


def test_compat_mode_is_the_papers_script():
    entry = get_entry('subcellular')
    preds = [pred(i, t, line, locs) for i, (t, line, locs) in enumerate(TEXTS)]
    score, rows = score_predictions(entry, preds, 'compat', n_boot=200)
    acc, recall = paper_scores([{'text': t, 'cell_line': line, 'localizations': locs} for t, line, locs in TEXTS])
    assert score.metrics['mention_accuracy'].value == pytest.approx(acc)
    assert score.metrics['mention_macro_recall'].value == pytest.approx(recall)
    assert score.primary == 'mention_accuracy' and score.value == pytest.approx(acc)
    # Substring search: "shell" holds HEL, "Cytosolic" holds Cytosol, "fibrillar center" holds Nucleoli.
    assert rows[6].parsed == 'HEL' and rows[6].status == 'wrong'


def test_strict_mode_reads_whole_words():
    entry = get_entry('subcellular')
    preds = [pred(i, t, line, locs) for i, (t, line, locs) in enumerate(TEXTS)]
    score, rows = score_predictions(entry, preds, 'strict', n_boot=200)
    assert [r.parsed for r in rows] == ['HeLa', 'A549', 'U-251 MG', 'PC-3', None, 'HEL', 'HeLa']
    assert [r.status for r in rows] == ['correct', 'correct', 'wrong', 'correct', 'unparseable', 'correct', 'wrong']
    assert score.metrics['mention_accuracy'].value == pytest.approx(400 / 7)
    assert score.metrics['mention_accuracy'].n_unparseable == 1
    # Per value: Nucleoplasm 2/2, Cytosol 1/3 ("Cytosolic" is not the word), Nucleoli 1/2 (a whole
    # word only in row 6: in row 1 it is part of the longer value), Nucleoli fibrillar center 1/1,
    # Mitochondria 1/1, Plasma membrane 1/1.
    per_value = score.details['mention_macro_recall']['per_value']
    assert per_value == {'Nucleoplasm': 100.0, 'Cytosol': pytest.approx(100 / 3, abs=1e-3), 'Nucleoli': 50.0,
                         'Nucleoli fibrillar center': 100.0, 'Mitochondria': 100.0, 'Plasma membrane': 100.0}
    assert score.metrics['mention_macro_recall'].value == pytest.approx((300 + 100 / 3 + 50 + 100) / 6)


def test_synonyms_name_the_same_line():
    entry = get_entry('subcellular')
    preds = [pred(0, 'U2OS cells with nucleoplasm staining', 'U-2 OS', ['Nucleoplasm']),
             pred(1, 'This is hek293.', 'HEK 293', []),
             pred(2, 'Hep-G2 and then U-2 OS', 'Hep G2', []),
             pred(3, 'U-2OS', 'U2OS', [])]   # the row spelled as a newer release: normalised too
    for mode in ('strict', 'compat'):
        score, rows = score_predictions(entry, preds, mode, n_boot=100)
        assert [r.status for r in rows] == ['correct'] * 4 and score.value == 100.0
        assert score.details['mention_accuracy']['values'] == ['HEK 293', 'Hep G2', 'U-2 OS']


def test_rows_without_a_cell_line_count_for_recall_only():
    entry = get_entry('subcellular')
    preds = [pred(0, 'nucleoplasm', '', ['Nucleoplasm']), pred(1, 'HeLa; cytosol', 'HeLa', ['Cytosol'])]
    score, rows = score_predictions(entry, preds, 'strict', n_boot=100)
    assert score.metrics['mention_accuracy'].n == 1 and score.metrics['mention_macro_recall'].n == 2
    assert [r.kind for r in rows] == ['caption_recall_only', 'caption']
    only = score_predictions(entry, preds[:1], 'strict', n_boot=100)[0]
    assert only.value is None and "no rows for the primary metric 'mention_accuracy'" in only.warnings


def test_macro_recall_ci_resamples_images():
    gold = [{'a'}, {'a', 'b'}, {'b'}, {'a'}] * 10
    found = [{'a'}, {'a'}, {'b'}, set()] * 10
    point, low, high, per_value, n_clusters = macro_recall_ci(gold, found, [f'i{k}' for k in range(40)],
                                                              n_boot=500, level=0.95, seed=0)
    assert per_value == {'a': pytest.approx(2 / 3), 'b': 0.5} and point == pytest.approx((2 / 3 + 0.5) / 2)
    assert low < point < high and n_clusters == 40
    # Questions sharing an image are resampled together; one image alone has no interval.
    _, low4, high4, _, n4 = macro_recall_ci(gold, found, [f'i{k % 10}' for k in range(40)], n_boot=500, level=0.95,
                                            seed=0)
    assert n4 == 10 and low4 < point < high4
    assert math.isnan(macro_recall_ci(gold, found, ['one image'] * 40, n_boot=50, level=0.95, seed=0)[1])


def test_finder_prefers_the_longest_at_one_place():
    finder = MentionFinder({'Nucleoli': [], 'Nucleoli fibrillar center': []}, 'strict')
    assert finder.all('the nucleoli fibrillar center') == {'Nucleoli fibrillar center'}
    assert finder.first('NUCLEOLI fibrillar center') == 'Nucleoli fibrillar center'
    assert MentionFinder({}, 'strict').first('anything') is None


@pytest.mark.usefixtures('swift_registered')
def test_prepared_captions_scored_end_to_end(tmp_path, data_home):
    """captions.json -> prepare -> the test split as swift loads it -> a predictions file -> medres score."""
    root = tmp_path / 'hpa'
    build_hpa_captions(root)
    prepare('subcellular', root, test_size=6)
    ds = load('medres/subcellular:test')
    path = tmp_path / 'predictions.jsonl'
    with open(path, 'w') as f:
        for k, row in enumerate(ds):
            caption = row['messages'][2]['content']
            # The model repeats the training caption (naming the line as captions.json spelled it),
            # except one answer that names no cell line.
            response = 'I cannot tell.' if k == 0 else caption
            f.write(json.dumps({'response': response, 'labels': caption,
                                'chat_template_kwargs': row['chat_template_kwargs']}) + '\n')
    preds = read_predictions(path, 'subcellular')
    assert preds[1].targets['cell_line'] and isinstance(preds[1].targets['localizations'], list)
    out = tmp_path / 'scores' / 'sub.json'
    text = run_medres('score', '--dataset', 'subcellular', '--predictions', str(path), '--out', str(out), '--n-boot', '200')
    assert 'mention_accuracy*' in text and 'mention_macro_recall' in text
    report = json.loads(out.read_text())
    acc = report['metrics']['mention_accuracy']
    assert acc['value'] == pytest.approx(500 / 6) and acc['n'] == 6 and acc['n_unparseable'] == 1
    assert report['details']['mention_accuracy']['column'] == 'cell_line'
    assert report['metrics']['mention_macro_recall']['value'] < 100
    # Rows written beside the summary pair arms in the grid on the primary metric.
    from swift_plugins.eval.scoring import read_rows, rows_path
    rows = read_rows(rows_path(out))
    c = compare_rows(rows, rows, 'mention_accuracy', n_boot=100)
    assert c.diff == 0 and len(rows) == 6


@pytest.mark.slow
def test_swift_infer_carries_the_targets(tiny_qwen2_vl, tmp_path, data_home):
    """Stock `swift infer` on the prepared test split writes each row's targets; `medres score` reads them."""
    from swift_plugins.fixtures.tiny_runs import tiny_infer_args

    from helpers import swift
    root = tmp_path / 'hpa'
    build_hpa_captions(root)
    prepare('subcellular', root, test_size=4)
    preds = tmp_path / 'preds.jsonl'
    swift('infer', tiny_infer_args(tiny_qwen2_vl, 'medres/subcellular:test', preds), tmp_path / 'infer.log')
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert len(rows) == 4 and all(isinstance(r['chat_template_kwargs']['medres']['targets']['localizations'], list)
                                  for r in rows)
    out = tmp_path / 'score.json'
    run_medres('score', '--dataset', 'subcellular', '--predictions', str(preds), '--out', str(out), '--n-boot', '100')
    report = json.loads(out.read_text())
    assert report['metrics']['mention_accuracy']['n'] == 4 and report['metrics']['mention_macro_recall']['n'] == 4
