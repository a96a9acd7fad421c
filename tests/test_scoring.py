"""Scoring: compat rules, tokens, open answers, summaries, unscorable rows, pairing, `medres score`.

The strict verdicts on adversarial outputs are in test_scoring_adversarial.py (cases in scoring_cases.py)."""
import json

import pytest
from scoring_cases import COMPOUND_LABELS, EVERY_COMPOUND

from swift_plugins.data.registry import Entry, get_entry
from swift_plugins.eval.answers import OptionSet, extract_answer, first_match, tokens
from swift_plugins.eval.predictions import Prediction, read_predictions
from swift_plugins.eval.scoring import (
    RowScorer,
    answer_tokens,
    compare_rows,
    llava_med_token_scores,
    read_rows,
    score_predictions,
    score_rows,
    token_scores,
    write_rows,
)


def entry(kind='classification', labels=None, **task) -> Entry:
    return Entry.model_validate({
        'name': 'toy', 'title': 'toy', 'modality': 'microscopy', 'task': {'kind': kind, **task},
        'metric': {'vqa': 'closed_accuracy', 'open_vqa': 'token_recall'}.get(kind, 'accuracy'),
        'sources': {'local': '.'}, 'splits': {'test': {'hub_split': 'test'}}, 'default_split': 'test',
        'columns': {'choices': 'options'} if kind == 'multiple_choice' else {},
        'labels': labels, 'native_size': {'width': 8, 'height': 8}, 'license': 'x', 'citation': 'x'})


def pred(response, gold, id='toy/test/0', image_key='img0', choices=None, prompt=None) -> Prediction:
    return Prediction(id=id, gold=gold, response=response, image_key=image_key,
                      choices=tuple(choices) if choices else None, line=1, prompt=prompt)


VQA = get_entry('vqa-rad')  # task.kind vqa, closed_answers [yes, no]
COMPOUND = entry('classification', labels=COMPOUND_LABELS)

# --compat is the paper's `gold.lower() in output.lower()`, quirks included: (entry, output, gold, correct).
COMPAT = [
    (VQA, 'not sure', 'no', True), (VQA, 'normal', 'no', True), (VQA, 'unknown', 'no', True),
    (VQA, 'no, yes', 'yes', True), (VQA, 'Yesterday', 'yes', True), (VQA, 'Yes, there is no fracture', 'yes', True),
    (VQA, 'No', 'yes', False), (VQA, '', 'no', False),
    (COMPOUND, 'aurora kinase inhibitors', 'Kinase inhibitors', True), (COMPOUND, 'Not DMSO.', 'DMSO', True),
    (COMPOUND, 'a kinase inhibitor', 'Kinase inhibitors', False),
    (COMPOUND, 'cholesterol lowering', 'Cholesterol-lowering', False),
    (COMPOUND, EVERY_COMPOUND, 'Eg5 inhibitors', True), (COMPOUND, '', 'DMSO', False),
]


@pytest.mark.parametrize('ent, output, gold, correct', COMPAT, ids=[f'{o!r}-{g}' for _, o, g, _ in COMPAT])
def test_compat_is_the_papers_substring_rule(ent, output, gold, correct):
    row = RowScorer(ent, 'compat')(pred(output, gold))
    assert (row.correct, row.status) == (correct, 'correct' if correct else 'wrong')
    assert row.kind == ('closed' if ent is VQA else 'classification')


def test_compat_first_match_is_the_papers_subcellular_rule():
    """med_eval infer_eval_subcellular.py: the first regex hit among the test file's cell lines, upper-cased;
    plain substrings, so "BJ" inside "object" is a hit."""
    cells = entry('classification', labels=['A-431', 'BJ', 'HeLa', 'U-2 OS', 'U-251 MG'], compat='first_match')
    preds = [pred('HeLa, not U-2 OS', 'HeLa', 'c/0', 'a'), pred('U-2 OS or HeLa', 'HeLa', 'c/1', 'b'),
             pred('The object shows HeLa cells', 'HeLa', 'c/2', 'c'), pred('U-251 MG', 'U-251 MG', 'c/3', 'd'),
             pred('hela', 'BJ', 'c/4', 'e'), pred('A-431', 'A-431', 'c/5', 'f')]
    rows = score_rows(cells, preds, 'compat')
    # Candidates are the gold answers of the file, as in the paper: U-2 OS is no gold there, so it is not searched.
    assert [r.parsed for r in rows] == ['HELA', 'HELA', 'BJ', 'U-251 MG', 'HELA', 'A-431']
    assert [r.correct for r in rows] == [True, True, False, True, False, True]
    with_u2os = score_rows(cells, [preds[1], pred('U-2 OS', 'U-2 OS', 'c/9', 'g')], 'compat')
    assert (with_u2os[0].parsed, with_u2os[0].correct) == ('U-2 OS', False)
    assert first_match('x', []) is None and first_match('U-251 MG', ['U-2', 'U-251 MG']) == 'U-251 MG'
    # Substring entries keep `gold in output`.
    assert RowScorer(entry('classification', labels=['BJ', 'HeLa']), 'compat')(pred('object', 'BJ')).correct
    # The shipped cell-line entry reads --compat the paper's way.
    shipped = get_entry('subcellular-cell-line')
    assert shipped.task.compat == 'first_match'
    two = [pred('U-2 OS cells, or HeLa', 'HeLa', 's/0', 'a'), pred('U-2 OS', 'U-2 OS', 's/1', 'b')]
    assert [r.correct for r in score_rows(shipped, two, 'compat')] == [False, True]


def test_tokens_keep_numbers_signs_and_comparisons():
    assert tokens('2.5 cm') == ['2.5', 'cm'] and tokens('4.3cm') == ['4.3', 'cm']
    assert tokens('ER+/PR-, HER2-negative') == ['er', '+', 'pr', '-', 'her', '2', 'negative']
    assert tokens('<5%') == ['<', '5', '%'] == tokens('less than 5 percent')
    assert tokens('≥ 10%') == ['>=', '10', '%'] == tokens('at least 10 per cent')
    assert tokens('2.0 cm') == tokens('2 cm') == tokens('2 centimeters')
    assert tokens('1,000 cells') == ['1000', 'cell'] and tokens('3,4') == ['3', '4']
    assert tokens('45.1*2.5 cm') == tokens('45.1 x 2.5 cm') == tokens('45.1×2.5cm')
    assert tokens('-5') == ['-', '5'] and tokens('x-ray') == ['x', 'ray'] and tokens('2-3') == ['2', '3']
    assert tokens("isn't") == ['is', 'not'] and tokens('Kinase inhibitors') == ['kinase', 'inhibitor']
    assert tokens('status of the nucleus') == ['status', 'of', 'the', 'nucleus']  # -us, -is, -ss keep their s


@pytest.mark.parametrize('output, answer', [
    ('<answer> B </answer> because', 'B'), ('<think>maybe no</think>Yes', 'Yes'), ('Reasoning...\nFinal answer: no', 'no'),
    ('Answer: The answer is **DMSO**.', 'DMSO.'), ('\\boxed{3 cm}', '3 cm'), ('`yes`', 'yes'),
    ('The correct option is (C)', '(C)'), ('Yes<|im_end|>', 'Yes'), ('**2*3 cm**', '2*3 cm'),
    ('The answer depends on the view.', 'The answer depends on the view.'),
    ('I cannot answer: unclear', 'I cannot answer: unclear'),
])
def test_answer_wrappers_are_stripped(output, answer):
    assert extract_answer(output) == answer


def test_letters_come_from_the_prompt_as_the_model_saw_it():
    opts = OptionSet(['fibroadenoma', 'benign tumor', 'metastatic carcinoma'])
    assert opts.letters('Options:\nA. fibroadenoma\nB. benign tumor\nC. metastatic carcinoma') == {
        'a': 'fibroadenoma', 'b': 'benign tumor', 'c': 'metastatic carcinoma'}
    assert opts.letters('Choose: (A) fibroadenoma (B) benign tumor (C) metastatic carcinoma')['c'] == 'metastatic carcinoma'
    assert opts.letters('fibroadenoma\nbenign tumor\nmetastatic carcinoma') == {}
    assert opts.letters(None) == {}


def test_multiple_choice_uses_row_choices_then_entry_labels_and_never_aborts():
    mc = entry('multiple_choice')
    choices = ['Pneumonia', 'Pneumothorax', 'Normal']
    scorer = RowScorer(mc)
    assert scorer(pred('Pneumothorax, left side.', 'Pneumothorax', choices=choices)).status == 'correct'
    assert scorer(pred('pneumonia or pneumothorax', 'Pneumothorax', choices=choices)).status == 'ambiguous'
    no_options = scorer(pred('Normal', 'Normal'))
    assert no_options.status == 'unscorable' and 'needs its options' in no_options.note
    labelled = RowScorer(entry('multiple_choice', labels=['A', 'B', 'C', 'D']))
    assert labelled(pred('B', 'B')).status == 'correct'  # one-letter options survive normalization
    assert labelled(pred('A', 'B')).parsed == 'A'
    outside = labelled(pred('E', 'E'))
    assert outside.status == 'unscorable' and "gold answer 'E' is not one of the options" in outside.note


def test_options_that_differ_only_in_sign_are_told_apart_and_spellings_of_one_answer_are_one():
    receptor = RowScorer(entry('classification', labels=['ER+', 'ER-']))
    assert receptor(pred('ER+', 'ER+')).status == 'correct' and receptor(pred('ER-', 'ER+')).status == 'wrong'
    assert RowScorer(entry('classification', labels=['ER+', 'ER-']), 'compat')(pred('ER+ tumour', 'ER+')).correct
    same = RowScorer(entry('multiple_choice'))
    row = same(pred('2 cm', '2.0 cm', choices=['2.0 cm', '1.5 cm', '2 cm']))
    assert row.status == 'correct' and row.parsed == '2.0 cm' and 'same answer' in row.note
    assert same(pred('1.5 cm', '2.0 cm', choices=['2.0 cm', '1.5 cm', '2 cm'])).status == 'wrong'


@pytest.mark.parametrize('output, gold, recall, f1, exact', [
    ('The left lung.', 'left lung', 1.0, 1.0, True),
    ('right lung', 'left lung', 0.5, 0.5, False),
    ('lung', 'left lung', 0.5, 2 / 3, False),
    ('left left', 'left lung', 0.5, 0.5, False),
    ('2', 'two', 1.0, 1.0, True),
    ('', 'left lung', 0.0, 0.0, False),
    ('there is a mass in the left upper lobe', 'left upper lobe', 1.0, 0.6, False),
    ('2.5 cm', '5 cm', 0.5, 0.5, False),                 # a decimal is one number
    ('Answer: left lung', 'left lung', 1.0, 1.0, True),  # wrappers go
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
    assert answer_tokens('  The LEFT-lung, (two) lesions!') == ['left', 'lung', '2', 'lesion']


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
    assert (closed.ci_method, recall.ci_method) == ('agresti_coull_deff', 'bootstrap')
    assert 'closed_accuracy, exact_match: 95% Agresti-Coull' in score.to_dict()['ci_method']
    compat, _ = score_predictions(VQA, preds, 'compat', n_boot=200)
    assert compat.metrics['closed_accuracy'].value == pytest.approx(75.0)  # "not sure", "No, yes" count
    assert [r.status for r in rows[:4]] == ['correct', 'wrong', 'unparseable', 'ambiguous']


def test_perfect_accuracy_has_an_honest_interval():
    preds = [pred('NILM', 'NILM', f'c/{i}', f'img{i}') for i in range(200)]
    score, _ = score_predictions(get_entry('cervical'), preds)
    acc = score.metrics['accuracy']
    assert acc.value == 100.0 and acc.ci_high == 100.0 and 97.5 < acc.ci_low < 98.5  # not [100.0, 100.0]


def test_classification_summary_counts_unparseable_and_ambiguous():
    preds = [pred('DMSO', 'DMSO', 'c/0', 'a'), pred('', 'DMSO', 'c/1', 'b'),
             pred(EVERY_COMPOUND, 'DMSO', 'c/2', 'c'), pred('DNA damage', 'DMSO', 'c/3', 'd')]
    score, _ = score_predictions(COMPOUND, preds, n_boot=200)
    acc = score.metrics['accuracy']
    assert (score.primary, acc.value, acc.n, acc.n_unparseable, acc.n_ambiguous) == ('accuracy', 25.0, 4, 1, 1)


def test_unscorable_rows_are_counted_named_and_do_not_stop_the_file():
    mc = entry('multiple_choice')
    opts = ['er- pr-', 'er+ pr-', 'er+ pr+', 'er- pr+']
    preds = [pred('er+ pr-', 'er+ pr-', 'w/0', 'a', opts), pred('ER- PR-', 'er+ pr-', 'w/1', 'a', opts),
             pred('invasive', 'lobular carcinoma in situ', 'w/2', 'b', ['invasive ductal carcinoma', 'fibroadenoma'])]
    score, rows = score_predictions(mc, preds)
    assert [r.status for r in rows] == ['correct', 'wrong', 'unscorable']
    acc = score.metrics['accuracy']
    assert (acc.n, acc.value, acc.n_unparseable, acc.n_unscorable) == (3, pytest.approx(100 / 3), 1, 1)
    assert any("w/2: gold answer 'lobular carcinoma in situ' is not one of the options" in w for w in score.warnings)


def test_rows_round_trip_and_pair_by_id_with_images_as_clusters(tmp_path):
    a = score_rows(VQA, [pred('yes', 'yes', f'v/{i}', f'i{i // 2}') for i in range(6)])
    b = score_rows(VQA, [pred('no' if i < 4 else 'yes', 'yes', f'v/{i}', f'i{i // 2}') for i in range(6)])
    write_rows(tmp_path / 'a.rows.jsonl', a)
    assert read_rows(tmp_path / 'a.rows.jsonl') == a
    cmp = compare_rows(a, b, 'closed_accuracy', a_name='native', b_name='low', n_boot=200)
    assert (cmp.n, cmp.n_clusters, cmp.table) == (6, 3, [[2, 4], [0, 0]])
    # Two images lost both their questions: 4 of 2**2 sign flips are as extreme, p = 0.5 (McNemar: 0.125).
    assert cmp.diff == pytest.approx(-4 / 6) and cmp.p_value == pytest.approx(0.5) and cmp.test == 'cluster_sign_flip'
    singles = compare_rows(score_rows(VQA, [pred('yes', 'yes', f'v/{i}', f'j{i}') for i in range(6)]),
                           score_rows(VQA, [pred('no' if i < 4 else 'yes', 'yes', f'v/{i}', f'j{i}') for i in range(6)]),
                           'closed_accuracy')
    assert singles.test == 'mcnemar_exact' and singles.p_value == pytest.approx(0.125)
    other_images = score_rows(VQA, [pred('yes', 'yes', f'v/{i}', f'x{i}') for i in range(6)])
    with pytest.raises(ValueError, match='disagree on the image of 6 questions'):
        compare_rows(a, other_images, 'closed_accuracy')


def test_compare_paper_marks_where_the_model_differs():
    from swift_plugins.eval.grid import CellResult, CellSpec, markdown_table, table_rows
    from swift_plugins.eval.paper import comparison_notes
    spec = CellSpec('native', 'ckpt', 'vqa-rad', 'test', 'native', 'r.yaml', {})
    res = CellResult(spec, None, {'primary': 'closed_accuracy', 'metrics': {'closed_accuracy': {
        'value': 50.0, 'ci_low': 40.0, 'ci_high': 60.0, 'n': 10}}}, 5.0, False)
    notes = comparison_notes('llava-hf/llava-onevision-qwen2-0.5b-ov-hf', 'compat')
    assert len(notes) == 1 and '0.5B' in notes[0]
    md = markdown_table(table_rows([res], 'LLaVA-OneVision-2B'), True, notes)
    assert '(paper\u2020 ' in md and md.rstrip().splitlines()[-1].startswith('\u2020 Differs from the paper: ')
    assert comparison_notes('Qwen/Qwen2-VL-2B-Instruct', 'compat') == []
    assert 'substring rule' in comparison_notes('Qwen2-VL-2B', 'strict')[0]


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
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows))
    return path


PREDICTIONS = [  # (response, gold, image): 3 images, 4 closed + 2 open questions
    ('Yes, there is.', 'yes', 'img-a'), ('No.', 'yes', 'img-a'), ('not sure', 'no', 'img-b'),
    ('no', 'no', 'img-b'), ('The left lung', 'left lung', 'img-c'), ('right kidney', 'left kidney', 'img-c')]


def test_cli_score_prints_table_and_writes_json_and_rows(tmp_path, capsys):
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


def test_cli_score_missing_or_empty_file(tmp_path, capsys):
    from swift_plugins.cli.main import main
    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'absent.jsonl')]) == 2
    assert 'absent.jsonl: cannot read' in capsys.readouterr().err
    (tmp_path / 'empty.jsonl').write_text('\n')
    assert main(['score', '--dataset', 'vqa-rad', '--predictions', str(tmp_path / 'empty.jsonl')]) == 2
    assert 'empty.jsonl: no predictions' in capsys.readouterr().err


def test_cli_score_reads_lettered_options_from_the_prompt_and_names_unscorable_rows(tmp_path, capsys):
    from swift_plugins.cli.main import main
    opts = ['invasive ductal carcinoma', 'invasive lobular carcinoma', 'ductal carcinoma in situ', 'fibroadenoma']
    question = 'What is the diagnosis?\nOptions:\n' + '\n'.join(f'{k}. {o}' for k, o in zip('ABCD', opts))

    def row(i, response, gold, choices=opts):
        r = infer_row(i, response, gold, f'slide-{i // 2}', dataset='wsi', question=question, split_rows=5)
        r['chat_template_kwargs']['medres']['choices'] = choices
        return r
    preds = write_jsonl(tmp_path / 'preds.jsonl', [
        row(0, 'B', opts[1]), row(1, 'The answer is (D).', opts[3]), row(2, 'A', opts[2]),
        row(3, 'er+ pr-', 'er+ pr-', ['er- pr-', 'er+ pr-']), row(4, 'B', 'lobular carcinoma in situ')])
    assert read_predictions(preds, 'wsi')[0].prompt.endswith('D. fibroadenoma')
    out = tmp_path / 'wsi.json'
    assert main(['score', '--dataset', 'wsi', '--predictions', str(preds), '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert "wsi/test/4: gold answer 'lobular carcinoma in situ' is not one of the options" in printed
    acc = json.loads(out.read_text())['metrics']['accuracy']
    assert (acc['n'], acc['value'], acc['n_unparseable'], acc['n_unscorable']) == (5, 60.0, 1, 1)
    assert [r.status for r in read_rows(tmp_path / 'wsi.rows.jsonl')] == [
        'correct', 'correct', 'wrong', 'correct', 'unscorable']
