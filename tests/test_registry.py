import json
import os
import subprocess
import sys
import textwrap

import pytest

from swift_plugins.data.registry import BUILTIN_DIR, RegistryError, get_entry, load_entry, load_registry
from swift_plugins.settings import Settings

VALID = textwrap.dedent("""\
    name: {name}
    title: My dataset
    modality: pathology
    task: {{kind: classification}}
    metric: accuracy
    sources: {{local: ./prepared}}
    splits: {{train: {{hub_split: train}}, test: {{hub_split: test, rows: 10}}}}
    labels: [tumor, normal]
    prompt: {{question: "Which tissue is this? Options: {{labels}}."}}
    native_size: {{width: 512, height: 512}}
    license: CC-BY-4.0
    citation: Me et al.
    """)


def write(tmp_path, name, text):
    path = tmp_path / f'{name}.yaml'
    path.write_text(text)
    return path


def test_builtin_entries_hold_the_paper_facts():
    entries = load_registry()
    assert {'vqa-rad', 'path-vqa', 'slake'} <= set(entries)
    rad, path, slake = entries['vqa-rad'], entries['path-vqa'], entries['slake']
    assert rad.sources.hf == 'flaviagiammarino/vqa-rad'
    assert {s: v.rows for s, v in rad.splits.items()} == {'train': 1793, 'test': 451}
    assert path.sources.hf == 'flaviagiammarino/path-vqa'
    assert {s: v.rows for s, v in path.splits.items()} == {'train': 19654, 'validation': 6259, 'test': 6719}
    assert slake.sources.hf == 'mdwiratathya/SLAKE-vqa-english'
    assert {s: v.rows for s, v in slake.splits.items()} == {'train': 4919, 'validation': 1053, 'test': 1061}
    for e in (rad, path, slake):
        assert e.prompt.system == 'You are a biomedical expert.'
        assert e.task.closed_answers == ['yes', 'no']
        assert e.metric == 'closed_accuracy'
        assert e.registered_name == f'medres/{e.name}'
    assert (rad.modality, path.modality, slake.modality) == ('radiology', 'pathology', 'radiology')


def test_valid_user_entry_loads_and_formats_labels(tmp_path):
    entry = load_entry(write(tmp_path, 'mine', VALID.format(name='mine')))
    assert entry.labels == ['tumor', 'normal']
    from swift_plugins.data.rows import format_question
    assert format_question(entry, 'ignored') == 'Which tissue is this? Options: tumor, normal.'


@pytest.mark.parametrize('mutate, field', [
    (lambda t: t.replace('modality: pathology', 'modality: pathologie'), "'modality'"),
    (lambda t: t.replace('metric: accuracy', 'metric: acc'), "'metric'"),
    (lambda t: t + 'colums: {image: img}\n', "'colums'"),
    (lambda t: t.replace('license: CC-BY-4.0\n', ''), "'license'"),
    (lambda t: t.replace('rows: 10', 'rows: -3'), "'splits.test.rows'"),
    (lambda t: t.replace('{{labels}}', '{{label_set}}').replace('{labels}', '{label_set}'), "'prompt.question'"),
    (lambda t: t.replace('labels: [tumor, normal]\n', ''), 'labels'),
    (lambda t: t.replace('name: mine', 'name: other'), "'name'"),
    (lambda t: t.replace('labels: [tumor, normal]', 'labels: [yes, no]'), 'quote them'),
])
def test_malformed_entry_names_file_and_field(tmp_path, mutate, field):
    path = write(tmp_path, 'mine', mutate(VALID.format(name='mine')))
    with pytest.raises(RegistryError) as e:
        load_entry(path)
    assert str(path) in str(e.value)
    assert field in str(e.value)


def test_not_yaml_and_not_mapping(tmp_path):
    with pytest.raises(RegistryError, match=r'bad\.yaml: not valid YAML'):
        load_entry(write(tmp_path, 'bad', 'name: [unclosed\n'))
    with pytest.raises(RegistryError, match=r'list\.yaml: expected a mapping'):
        load_entry(write(tmp_path, 'list', '- a\n- b\n'))


def test_user_folder_adds_and_overrides(tmp_path, monkeypatch):
    write(tmp_path, 'mine', VALID.format(name='mine'))
    text = (BUILTIN_DIR / 'vqa-rad.yaml').read_text().replace('title: VQA-RAD', 'title: VQA-RAD (mine)')
    write(tmp_path, 'vqa-rad', text)
    monkeypatch.setenv('MEDRES_REGISTRY', str(tmp_path))
    dirs = Settings.from_env().registry_dirs      # the environment is read at the boundary only
    assert dirs == (tmp_path,)
    entries = load_registry(dirs)
    assert entries['mine'].title == 'My dataset'
    assert entries['vqa-rad'].title == 'VQA-RAD (mine)'
    assert get_entry('medres/mine', dirs).name == 'mine'
    assert 'mine' not in load_registry()
    with pytest.raises(RegistryError, match='unknown dataset'):
        get_entry('nope', dirs)


def test_missing_user_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_REGISTRY', str(tmp_path / 'absent'))
    with pytest.raises(RegistryError, match='absent: registry folder does not exist'):
        load_registry(Settings.from_env().registry_dirs)


def _medres(*args):
    env = {**os.environ, 'COLUMNS': '200'}  # rich folds tables to the terminal width
    return subprocess.run([sys.executable, '-m', 'swift_plugins.cli.main', *args], capture_output=True, text=True, env=env)


def test_cli_datasets_lists_entries_and_reports_bad_files(tmp_path):
    ok = _medres('datasets', '--json')
    assert ok.returncode == 0, ok.stderr
    listed = {e['registered_as']: e for e in json.loads(ok.stdout)}
    assert {'medres/vqa-rad', 'medres/path-vqa', 'medres/slake'} <= set(listed)
    assert listed['medres/path-vqa']['splits']['validation']['rows'] == 6259

    table = _medres('datasets')
    assert table.returncode == 0 and 'medres/slake' in table.stdout and 'radiology' in table.stdout

    bad = write(tmp_path, 'broken', VALID.format(name='broken').replace('task: {kind: classification}',
                                                                       'task: {kind: segmentation}'))
    out = _medres('--registry', str(tmp_path), 'datasets')
    assert out.returncode == 2
    assert str(bad) in out.stderr and out.stderr.startswith('medres: error: ')
    assert "'task.kind'" in out.stderr and 'Traceback' not in out.stdout + out.stderr


def test_cli_plugin_path_points_at_the_plugin_file():
    out = _medres('plugin-path')
    path = out.stdout.strip()
    assert out.returncode == 0 and path.endswith('medres_plugin.py')
    assert 'register_datasets(' in open(path).read()


def test_prepared_entries_hold_the_paper_facts():
    entries = load_registry()
    table1 = {'subcellular': ('microscopy', 2048, 2048), 'compound': ('microscopy', 1280, 1024),
              'cervical': ('cytology', 2048, 1536), 'wsi': ('pathology', 4000, 3000)}
    for name, (modality, width, height) in table1.items():
        e = entries[name]
        assert (e.modality, e.native_size.width, e.native_size.height) == (modality, width, height)
        assert e.sources.local == f'${{MEDRES_DATA_HOME}}/prepared/{name}' and not (e.sources.hf or e.sources.ms)
        assert e.metric == ('mention_accuracy' if name == 'subcellular' else 'accuracy') and e.homepage
    assert len(entries['compound'].labels) == 13 and 'DMSO' in entries['compound'].labels
    assert entries['cervical'].labels == ['NILM', 'LSIL', 'HSIL', 'SCC']
    assert entries['cervical'].splits['test'].rows == 200 and entries['subcellular'].splits['test'].rows == 2000
    assert {'U-2 OS', 'A-431', 'U-251 MG'} <= set(entries['subcellular'].labels)
    assert entries['wsi'].task.kind == 'multiple_choice' and set(entries['wsi'].splits) == {'train', 'validation', 'test'}
    assert [c.source for c in entries['compound'].channels] == ['Actin', 'Tubulin', 'DAPI']
    assert [c.color for c in entries['subcellular'].channels] == ['red', 'green', 'blue', 'none']
    for name in ('compound', 'cervical', 'wsi', 'subcellular-cell-line'):
        assert '{labels}' in entries[name].prompt.question or '{choices}' in entries[name].prompt.question
    # The paper's Subcellular task: captions in training, its own question at test time.
    sub = entries['subcellular']
    assert sub.task.kind == 'caption' and sub.columns.answer == 'caption'
    assert sub.question_template('test') == 'Describe the cell line and subcellular localizations shown in this image.'
    assert sub.question_template('train') == 'Provide a description of the given image.'
    assert sub.synonyms['U-2 OS'] == ['U2OS', 'U-2OS', 'U2 OS'] and 'A-549' in sub.synonyms['A549']


# What the public sources state (the project's reference on the real sources, checked 2026-11).
LICENCES = {
    'vqa-rad': ['CC0'],
    'path-vqa': ['MIT'],
    # The hub copy's card states none; the original SLAKE release is CC BY 4.0.
    'slake': ['CC BY 4.0', 'BoKelvin/SLAKE', 'mdwiratathya/SLAKE-vqa-english states no licence'],
    'subcellular': ['CC BY-SA 3.0', 'proteinatlas.org/about/licence'],
    'subcellular-cell-line': ['CC BY-SA 3.0', 'proteinatlas.org/about/licence'],
    'compound': ['bbbc.broadinstitute.org/BBBC021'],
    'cervical': ['CC BY 4.0', 'zddtpgzv63'],
    'wsi': ['github.com/cpystan/WSI-VQA', 'TCGA'],
    'probe': ['medres'],
}


def test_every_licence_string_matches_the_sources():
    entries = load_registry()
    assert set(LICENCES) == set(entries)
    for name, needles in LICENCES.items():
        for needle in needles:
            assert needle in entries[name].license, (name, needle, entries[name].license)


def test_cli_datasets_lists_the_papers_seven_and_the_probe(monkeypatch):
    # datasets' multi-process map swaps os.environ for a copy, so a user registry set by an
    # earlier test can outlive its monkeypatch; this test is about the built-ins only.
    monkeypatch.delenv('MEDRES_REGISTRY', raising=False)
    out = _medres('datasets', '--json')
    assert out.returncode == 0, out.stderr
    assert {e['registered_as'] for e in json.loads(out.stdout)} == {
        f'medres/{n}' for n in ('subcellular', 'subcellular-cell-line', 'compound', 'cervical', 'wsi', 'vqa-rad',
                                'path-vqa', 'slake', 'probe')}
    table = _medres('datasets')
    assert '(9 entries)' in table.stdout and 'medres/wsi' in table.stdout and 'multiple_choice' in table.stdout


def test_a_bad_registry_file_stops_swift_with_file_and_field(tmp_path):
    """Stock `swift sft` with a user registry folder holding a malformed entry: no traceback."""
    write(tmp_path, 'bad', VALID.format(name='bad').replace('metric: accuracy', 'metric: auc'))
    from helpers import BIN, plugin_path
    env = {**os.environ, 'MEDRES_REGISTRY': str(tmp_path)}
    out = subprocess.run([str(BIN / 'swift'), 'sft', '--external_plugins', plugin_path(), '--model', 'x',
                          '--dataset', 'medres/bad'], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert f"medres: error: {tmp_path / 'bad.yaml'}: field 'metric'" in out.stderr
    assert 'Traceback' not in out.stderr


CAPTION = textwrap.dedent("""\
    name: cap
    title: Captions
    modality: microscopy
    task: {kind: caption, targets: {mention_accuracy: line, mention_macro_recall: places}}
    metric: mention_accuracy
    sources: {local: ./prepared}
    splits: {train: {hub_split: train}, test: {hub_split: test, question: "Describe it."}}
    columns: {image: image, question: null, answer: caption}
    prompt: {question: "Caption this."}
    labels: [HeLa]
    synonyms: {HeLa: [Hela-S3]}
    native_size: {width: 64, height: 64}
    license: CC0
    citation: Me
    """)


@pytest.mark.parametrize('mutate, message', [
    (lambda t: t.replace('metric: mention_accuracy', 'metric: accuracy'), 'go with task.kind caption'),
    (lambda t: t.replace('kind: caption, targets', 'kind: classification, targets'), 'go with task.kind caption'),
    (lambda t: t.replace('mention_accuracy: line, ', ''), "needs the column its metric 'mention_accuracy' reads"),
    (lambda t: t.replace('mention_macro_recall: places', 'bleu: places'), "'task.targets'.*not caption metrics"),
    (lambda t: t.replace('"Describe it."', '"Describe {thing}."'), "'splits.test.question'.*unknown placeholder"),
    (lambda t: t.replace('"Describe it."', '"One of {labels}."').replace('labels: [HeLa]\n', '')
     .replace('synonyms: {HeLa: [Hela-S3]}\n', ''), 'splits.test.question uses {labels}'),
])
def test_caption_entries_are_checked(tmp_path, mutate, message):
    entry = load_entry(write(tmp_path, 'cap', CAPTION))
    assert entry.question_template('test') == 'Describe it.' and entry.question_template('train') == 'Caption this.'
    with pytest.raises(RegistryError, match=message):
        load_entry(write(tmp_path, 'cap', mutate(CAPTION)))
