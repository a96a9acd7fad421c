"""Scoring rules: adversarial outputs against strict and compat modes, open-answer metrics, summaries."""
import pytest

from swift_plugins.data.registry import Entry, get_entry
from swift_plugins.eval.predictions import Prediction
from swift_plugins.eval.scoring import (
    LabelMatcher,
    RowScorer,
    ScoreError,
    answer_tokens,
    compare_rows,
    llava_med_token_scores,
    read_rows,
    score_predictions,
    score_rows,
    token_scores,
    write_rows,
)

# The 13 mechanism-of-action classes of BBBC021 (the paper's "Compound" dataset).
COMPOUND_LABELS = ['Actin disruptors', 'Aurora kinase inhibitors', 'Cholesterol-lowering', 'DMSO', 'DNA damage',
                   'DNA replication', 'Eg5 inhibitors', 'Epithelial', 'Kinase inhibitors',
                   'Microtubule destabilizers', 'Microtubule stabilizers', 'Protein degradation',
                   'Protein synthesis']


def entry(kind='classification', labels=None, **task) -> Entry:
    return Entry.model_validate({
        'name': 'toy', 'title': 'toy', 'modality': 'microscopy', 'task': {'kind': kind, **task},
        'metric': {'vqa': 'closed_accuracy', 'open_vqa': 'token_recall'}.get(kind, 'accuracy'),
        'sources': {'local': '.'}, 'splits': {'test': {'hub_split': 'test'}}, 'default_split': 'test',
        'columns': {'choices': 'options'} if kind == 'multiple_choice' else {},
        'labels': labels, 'native_size': {'width': 8, 'height': 8}, 'license': 'x', 'citation': 'x'})


def pred(response, gold, id='toy/test/0', image_key='img0', choices=None) -> Prediction:
    return Prediction(id=id, gold=gold, response=response, image_key=image_key,
                      choices=tuple(choices) if choices else None, line=1)


VQA = get_entry('vqa-rad')  # task.kind vqa, closed_answers [yes, no]
COMPOUND = entry('classification', labels=COMPOUND_LABELS)
EVERY_OPTION = 'It could be ' + ', '.join(COMPOUND_LABELS) + '.'

# (entry, output, gold, strict status, strict parsed, compat correct)
ADVERSARIAL = [
    # closed yes/no: compat is the paper's `'no' in pred.lower()`
    (VQA, 'not sure', 'no', 'unparseable', None, True),
    (VQA, 'normal', 'no', 'unparseable', None, True),
    (VQA, 'unknown', 'no', 'unparseable', None, True),
    (VQA, 'no, yes', 'no', 'ambiguous', None, True),
    (VQA, 'no, yes', 'yes', 'ambiguous', None, True),
    (VQA, 'Yes.', 'yes', 'correct', 'yes', True),
    (VQA, 'YES it is', 'yes', 'correct', 'yes', True),
    (VQA, 'No, there is no fracture.', 'no', 'correct', 'no', True),
    (VQA, 'No', 'yes', 'wrong', 'no', False),
    (VQA, 'Yes, there is no fracture', 'yes', 'ambiguous', None, True),
    (VQA, 'The answer is yes', 'yes', 'unparseable', None, True),
    (VQA, 'Yesterday', 'yes', 'unparseable', None, True),
    (VQA, '', 'yes', 'unparseable', None, False),
    (VQA, '', 'no', 'unparseable', None, False),
    # classification: compat is `gold.lower() in pred.lower()`
    (COMPOUND, 'aurora kinase inhibitors', 'Kinase inhibitors', 'wrong', 'Aurora kinase inhibitors', True),
    (COMPOUND, 'Aurora kinase inhibitors', 'Aurora kinase inhibitors', 'correct', 'Aurora kinase inhibitors', True),
    (COMPOUND, 'These are kinase inhibitors.', 'Kinase inhibitors', 'correct', 'Kinase inhibitors', True),
    (COMPOUND, 'a kinase inhibitor', 'Kinase inhibitors', 'unparseable', None, False),
    (COMPOUND, 'cholesterol lowering', 'Cholesterol-lowering', 'correct', 'Cholesterol-lowering', False),
    (COMPOUND, 'Microtubule stabilizers', 'Microtubule destabilizers', 'wrong', 'Microtubule stabilizers', False),
    (COMPOUND, 'DNA', 'DNA damage', 'unparseable', None, False),
    (COMPOUND, 'Actin disruptors or DNA damage', 'DNA damage', 'ambiguous', None, True),
    (COMPOUND, '', 'DMSO', 'unparseable', None, False),
    (COMPOUND, EVERY_OPTION, 'Eg5 inhibitors', 'ambiguous', None, True),
]


@pytest.mark.parametrize('ent, output, gold, status, parsed, compat', ADVERSARIAL,
                         ids=[f'{o!r}-gold-{g!r}' for _, o, g, *_ in ADVERSARIAL])
def test_adversarial_outputs_strict_and_compat(ent, output, gold, status, parsed, compat):
    strict = RowScorer(ent, 'strict')(pred(output, gold))
    assert (strict.status, strict.parsed, strict.correct) == (status, parsed, status == 'correct')
    loose = RowScorer(ent, 'compat')(pred(output, gold))
    assert (loose.correct, loose.status) == (compat, 'correct' if compat else 'wrong')
    assert strict.kind == loose.kind == ('closed' if ent is VQA else 'classification')


def test_longest_label_wins_and_word_boundaries():
    m = LabelMatcher(COMPOUND_LABELS)
    assert m.find('aurora kinase inhibitors, not plain kinase inhibitors') == [
        ('Aurora kinase inhibitors', 0), ('Kinase inhibitors', 5)]
    assert m.find('DMSOs and non-epithelial') == [('Epithelial', 3)]  # "non-epithelial": hyphen separates words
    with pytest.raises(ScoreError, match="'ER\\+' and 'ER-' differ only"):
        LabelMatcher(['ER+', 'ER-'])


def test_multiple_choice_uses_row_choices_then_entry_labels():
    mc = entry('multiple_choice')
    choices = ['Pneumonia', 'Pneumothorax', 'Normal']
    scorer = RowScorer(mc)
    assert scorer(pred('Pneumothorax, left side.', 'Pneumothorax', choices=choices)).status == 'correct'
    assert scorer(pred('pneumonia or pneumothorax', 'Pneumothorax', choices=choices)).status == 'ambiguous'
    with pytest.raises(ScoreError, match='needs its options'):
        scorer(pred('Normal', 'Normal'))
    labelled = RowScorer(entry('multiple_choice', labels=['A', 'B', 'C', 'D']))
    assert labelled(pred('B', 'B')).status == 'correct'  # one-letter options survive normalization
    assert labelled(pred('A', 'B')).parsed == 'A'
    with pytest.raises(ScoreError, match="gold answer 'E' is not one of"):
        labelled(pred('E', 'E'))


@pytest.mark.parametrize('output, gold, recall, f1, exact', [
    ('The left lung.', 'left lung', 1.0, 1.0, True),
    ('right lung', 'left lung', 0.5, 0.5, False),
    ('lung', 'left lung', 0.5, 2 / 3, False),
    ('left left', 'left lung', 0.5, 0.5, False),
    ('2', 'two', 1.0, 1.0, True),
    ('', 'left lung', 0.0, 0.0, False),
    ('there is a mass in the left upper lobe', 'left upper lobe', 1.0, 0.6, False),
])
def test_open_answer_token_scores(output, gold, recall, f1, exact):
    assert token_scores(output, gold) == pytest.approx((recall, f1, exact))


@pytest.mark.parametrize('output, gold, recall, f1', [
    ('left left', 'left lung', 2 / 3, 0.8),  # LLaVA-Med counts a repeated gold word twice
    ('The left lung.', 'left lung', 1.0, 1.0),
    ('right-lung', 'left lung', 0.5, 0.5),
    ('none', '0', 1.0, 1.0),  # its number map sends "none" to "0"
    ('', 'left lung', 0.0, 0.0),
])
def test_compat_open_answers_follow_llava_med(output, gold, recall, f1):
    assert llava_med_token_scores(output, gold) == pytest.approx((recall, f1))


def test_answer_tokens_normalization():
    assert answer_tokens('  The LEFT-lung, (two) lesions!') == ['left', 'lung', '2', 'lesions']


def test_vqa_summary_splits_closed_and_open_with_their_own_n():
    preds = [pred('Yes', 'yes', 'v/0', 'i0'), pred('no', 'yes', 'v/1', 'i0'), pred('not sure', 'no', 'v/2', 'i1'),
             pred('No, yes', 'no', 'v/3', 'i2'), pred('left lung', 'left lung', 'v/4', 'i1'),
             pred('lung', 'left lung', 'v/5', 'i3')]
    score, rows = score_predictions(VQA, preds, n_boot=200)
    assert score.primary == 'closed_accuracy' and score.value == pytest.approx(25.0)
    closed, recall, exact = (score.metrics[k] for k in ('closed_accuracy', 'token_recall', 'exact_match'))
    assert (closed.n, closed.n_clusters, closed.n_unparseable, closed.n_ambiguous) == (4, 3, 1, 1)
    assert (recall.n, recall.value, exact.value) == (2, pytest.approx(75.0), pytest.approx(50.0))
    assert 'accuracy' not in score.metrics  # it would repeat closed_accuracy
    assert closed.ci_low <= closed.value <= closed.ci_high
    compat, _ = score_predictions(VQA, preds, 'compat', n_boot=200)
    assert compat.metrics['closed_accuracy'].value == pytest.approx(75.0)  # "not sure", "No, yes" count
    assert [r.status for r in rows[:4]] == ['correct', 'wrong', 'unparseable', 'ambiguous']


def test_classification_summary_counts_unparseable_and_ambiguous():
    preds = [pred('DMSO', 'DMSO', 'c/0', 'a'), pred('', 'DMSO', 'c/1', 'b'),
             pred(EVERY_OPTION, 'DMSO', 'c/2', 'c'), pred('DNA damage', 'DMSO', 'c/3', 'd')]
    score, _ = score_predictions(COMPOUND, preds, n_boot=200)
    acc = score.metrics['accuracy']
    assert (score.primary, acc.value, acc.n, acc.n_unparseable, acc.n_ambiguous) == ('accuracy', 25.0, 4, 1, 1)


def test_rows_round_trip_and_pair_by_id(tmp_path):
    a = score_rows(VQA, [pred('yes', 'yes', f'v/{i}', f'i{i // 2}') for i in range(6)])
    b = score_rows(VQA, [pred('no' if i < 4 else 'yes', 'yes', f'v/{i}', f'i{i // 2}') for i in range(6)])
    write_rows(tmp_path / 'a.rows.jsonl', a)
    assert read_rows(tmp_path / 'a.rows.jsonl') == a
    cmp = compare_rows(a, b, 'closed_accuracy', a_name='native', b_name='low', n_boot=200)
    assert (cmp.n, cmp.n_clusters, cmp.table) == (6, 3, [[2, 4], [0, 0]])
    assert cmp.diff == pytest.approx(-4 / 6) and cmp.p_value == pytest.approx(0.125)
    other_images = score_rows(VQA, [pred('yes', 'yes', f'v/{i}', f'x{i}') for i in range(6)])
    with pytest.raises(ValueError, match='disagree on the image of 6 questions'):
        compare_rows(a, other_images, 'closed_accuracy')


# ---------------------------------------------------------------------------- `medres score`

def infer_row(index, response, gold, image_key, dataset='vqa-rad', question='Is there a fracture?', split_rows=6):
    """One line of `swift infer --result_path` output for a medres dataset."""
    return {
        'response': response, 'labels': gold, 'logprobs': None,
        'images': [{'bytes': '<<<bytes>>>', 'path': None}],
        'messages': [{'role': 'system', 'content': 'You are a biomedical expert.'},
                     {'role': 'user', 'content': f'<image>{question}'},
                     {'role': 'assistant', 'content': response}],
        'chat_template_kwargs': {'medres': {
            'id': f'{dataset}/test/{index}', 'dataset': dataset, 'split': 'test', 'index': index,
            'modality': 'radiology', 'width': 1024, 'height': 1024, 'source_mode': 'L', 'image_key': image_key,
            'split_rows': split_rows}},
    }


def write_jsonl(path, rows):
    import json
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


PREDICTIONS = [  # (response, gold, image): 3 images, 4 closed + 2 open questions
    ('Yes, there is.', 'yes', 'img-a'), ('No.', 'yes', 'img-a'), ('not sure', 'no', 'img-b'),
    ('no', 'no', 'img-b'), ('The left lung', 'left lung', 'img-c'), ('right kidney', 'left kidney', 'img-c')]


def test_cli_score_prints_table_and_writes_json_and_rows(tmp_path, capsys):
    import json

    from swift_plugins.cli.main import main
    preds = write_jsonl(tmp_path / 'preds.jsonl',
                        [infer_row(i, r, g, k) for i, (r, g, k) in enumerate(PREDICTIONS)])
    out = tmp_path / 'scores' / 'vqa-rad.json'
    assert main(['score', '--dataset', 'medres/vqa-rad', '--predictions', str(preds), '--out', str(out),
                 '--n-boot', '300', '--bootstrap-seed', '1']) == 0
    printed = capsys.readouterr().out
    assert 'closed_accuracy' in printed and '50.0' in printed and 'token_recall' in printed

    report = json.loads(out.read_text())
    assert (report['dataset'], report['mode'], report['primary'], report['n_rows']) == (
        'vqa-rad', 'strict', 'closed_accuracy', 6)
    closed = report['metrics']['closed_accuracy']
    assert (closed['value'], closed['n'], closed['n_clusters'], closed['n_unparseable']) == (50.0, 4, 2, 1)
    assert report['metrics']['token_recall']['value'] == pytest.approx(75.0)
    assert report['seed'] == 1 and report['n_boot'] == 300
    rows = read_rows(tmp_path / 'scores' / 'vqa-rad.rows.jsonl')
    assert [r.id for r in rows] == [f'vqa-rad/test/{i}' for i in range(6)]
    assert [r.status for r in rows[:4]] == ['correct', 'wrong', 'unparseable', 'correct']

    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(preds), '--compat', '--json',
                 '--n-boot', '300']) == 0
    compat = json.loads(capsys.readouterr().out)
    assert compat['mode'] == 'compat' and compat['metrics']['closed_accuracy']['value'] == 75.0


@pytest.mark.parametrize('rows, message', [
    ([infer_row(0, 'yes', 'yes', 'a'), infer_row(1, 'no', 'no', 'b'), infer_row(0, 'no', 'yes', 'a')],
     r"preds\.jsonl: 2 rows of 'vqa-rad', but 1 duplicated rows \(id 'vqa-rad/test/0' at lines 1 and 3 first\)"),
    ([infer_row(0, 'yes', 'yes', 'a'), infer_row(5, 'no', 'no', 'b', dataset='slake')],
     r"preds\.jsonl: 1 rows of 'vqa-rad', but 1 rows of another dataset \(1 of 'slake'; first at line 2\)"),
    ([infer_row(0, 'yes', 'yes', 'a') | {'chat_template_kwargs': {}}],
     r'preds\.jsonl:1: no chat_template_kwargs\.medres metadata'),
    ([infer_row(0, 'yes', None, 'a')], r"preds\.jsonl:1: row 'vqa-rad/test/0' has no gold answer"),
])
def test_cli_score_rejects_bad_prediction_files(tmp_path, capsys, rows, message):
    import re

    from swift_plugins.cli.main import main
    preds = write_jsonl(tmp_path / 'preds.jsonl', rows)
    out = tmp_path / 'score.json'
    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(preds), '--out', str(out)]) == 2
    printed = capsys.readouterr().err
    assert printed.startswith('medres: error: ') and re.search(message, printed), printed
    assert not out.exists()


def test_cli_score_unknown_dataset(tmp_path, capsys):
    from swift_plugins.cli.main import main
    preds = write_jsonl(tmp_path / 'preds.jsonl', [infer_row(0, 'yes', 'yes', 'a')])
    assert main(['score', '--dataset', 'nope', '--predictions', str(preds)]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_labels_strict_cannot_separate_are_refused_in_strict_mode_only():
    receptor = entry('classification', labels=['ER+', 'ER-'])
    with pytest.raises(ScoreError, match='differ only in case or punctuation'):
        RowScorer(receptor)(pred('ER+', 'ER+'))
    assert RowScorer(receptor, 'compat')(pred('ER+ tumour', 'ER+')).correct


def test_cli_score_missing_or_empty_file(tmp_path, capsys):
    from swift_plugins.cli.main import main
    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'absent.jsonl')]) == 2
    assert 'absent.jsonl: cannot read' in capsys.readouterr().err
    (tmp_path / 'empty.jsonl').write_text('\n')
    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'empty.jsonl')]) == 2
    assert 'empty.jsonl: no predictions' in capsys.readouterr().err
