"""What every `medres prepare` run shares: atomic writes, idempotence, CLI behaviour."""
import json
import os

import pytest

from swift_plugins.cli.main import main
from swift_plugins.data.registry import RegistryError, get_entry
from swift_plugins.data.sources import resolve_source
from swift_plugins.fixtures.raw_sources import build_cervical
from swift_plugins.prepare import prepare
from swift_plugins.prepare.common import DatasetWriter, PrepareError
from swift_plugins.settings import Settings


@pytest.fixture
def raw(tmp_path):
    root = tmp_path / 'raw'
    build_cervical(root)
    return root


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in sorted(folder.rglob('*'))}


def interrupt_after(monkeypatch, n):
    """Make the n-th image write raise KeyboardInterrupt (Ctrl-C in the middle of a run)."""
    real, calls = DatasetWriter.copy, []

    def copy(self, src, rel):
        calls.append(rel)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, src, rel)
    monkeypatch.setattr(DatasetWriter, 'copy', copy)
    return real


def test_interrupted_run_leaves_nothing_the_registry_would_load(raw, data_home, monkeypatch):
    # workers=1: the interruption is patched into this process (spawned workers would not see it).
    real = interrupt_after(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        prepare('cervical', raw, test_size=5, workers=1)
    prepared = data_home / 'prepared'
    assert list(prepared.iterdir()) == []      # no output folder, no partial folder left behind
    with pytest.raises(RegistryError, match=r"cervical\.yaml: field 'sources\.local': folder .* does not exist"):
        resolve_source(get_entry('cervical'), use_hf=False, settings=Settings.from_env())

    # A complete dataset survives an interrupted rebuild untouched.
    monkeypatch.setattr(DatasetWriter, 'copy', real)
    prepare('cervical', raw, test_size=5, workers=1)
    out = prepared / 'cervical'
    before, manifest = snapshot(out), (out / 'manifest.json').read_text()
    interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        prepare('cervical', raw, test_size=5, workers=1, force=True)
    assert snapshot(out) == before and (out / 'manifest.json').read_text() == manifest
    assert [p.name for p in prepared.iterdir()] == ['cervical']

    # A run killed outright leaves only a hidden partial folder, which the next run removes.
    monkeypatch.setattr(DatasetWriter, 'copy', real)
    dead = prepared / '.cervical.partial-999999999-0badc0de'
    (dead / 'data').mkdir(parents=True)
    prepare('cervical', raw, test_size=5, workers=1, force=True)
    assert [p.name for p in prepared.iterdir()] == ['cervical']


def test_second_run_is_a_no_op_that_says_so(raw, tmp_path, capsys):
    out = tmp_path / 'out'
    args = ['prepare', 'cervical', '--raw', str(raw), '--out', str(out), '--test-size', '5']
    assert main(args) == 0
    first = snapshot(out)
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert 'is up to date' in err and 'nothing to do' in err
    assert snapshot(out) == first

    # A changed input file, a changed option or a damaged output rebuilds.
    some_image = next(raw.rglob('*.jpg'))
    st = some_image.stat()
    os.utime(some_image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not prepare('cervical', raw, out, test_size=5).get('up_to_date')
    assert prepare('cervical', raw, out, test_size=5).get('up_to_date')
    assert not prepare('cervical', raw, out, test_size=5, seed=7).get('up_to_date')
    manifest = json.loads((out / 'manifest.json').read_text())
    assert manifest['split_seed'] == 7
    next((out / 'images').rglob('*.jpg')).unlink()
    assert not prepare('cervical', raw, out, test_size=5, seed=7).get('up_to_date')


def test_cli_errors_and_refusals(raw, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert main(['prepare', 'cervical', '--raw', str(empty)]) == 2
    assert 'medres: error: ' in capsys.readouterr().err
    assert main(['prepare', 'wsi', '--raw', str(tmp_path / 'absent')]) == 2
    assert 'not a folder' in capsys.readouterr().err

    precious = tmp_path / 'precious'
    precious.mkdir()
    (precious / 'thesis.txt').write_text('do not delete')
    with pytest.raises(PrepareError, match='exists and is not a prepared dataset'):
        prepare('cervical', raw, precious, test_size=5)
    assert (precious / 'thesis.txt').read_text() == 'do not delete'
    with pytest.raises(PrepareError, match=r'--test-size 20: needs 0 < test size < 20 images'):
        prepare('cervical', raw, tmp_path / 'out', test_size=20)
    with pytest.raises(SystemExit):
        main(['prepare', 'cervical', '--raw', str(raw), '--on-error', 'ignore'])


def test_output_names_and_places(raw, tmp_path):
    from swift_plugins.prepare.common import safe_name
    assert safe_name('TCGA-A1-A0SF') == 'TCGA-A1-A0SF'
    assert safe_name('a b') != safe_name('a_b') and safe_name('a b').startswith('a_b-')
    with pytest.raises(PrepareError, match='is inside --raw'):
        prepare('cervical', raw, raw / 'prepared', test_size=5)


@pytest.mark.usefixtures('swift_registered')
def test_a_rebuilt_folder_never_loads_cached_rows(raw, data_home, tmp_path):
    """`datasets` keys its cache of a local folder on the folder's name and card: the card carries the
    rows' hash, so a rebuild with another split (or another folder of the same name) loads its own rows."""
    from helpers import load
    from helpers import prepared_rows as rows
    out = data_home / 'prepared' / 'cervical'
    prepare('cervical', raw, test_size=5)
    first = [r['messages'][2]['content'] for r in load('medres/cervical:test')]
    assert first == [r['answer'] for r in rows(out, 'test')]
    prepare('cervical', raw, test_size=7, seed=3, force=True)
    second = load('medres/cervical:test')
    assert len(second) == 7 and [r['messages'][2]['content'] for r in second] == [r['answer'] for r in rows(out, 'test')]


@pytest.mark.parametrize('name, build, options', [
    ('cervical', 'build_cervical', {'test_size': 5}),
    ('compound', 'build_bbbc021', {'split_by': 'plate', 'test_fraction': 0.25}),
    ('subcellular', 'build_hpa_captions', {'test_size': 4}),
    ('wsi', 'build_wsi_vqa', {'downsample': 0.25, 'max_pixels': 12_000_000}),
])
def test_workers_give_the_same_output_in_the_same_order(name, build, options, tmp_path):
    """`--workers N` parallelises decoding and writing; files, rows and their order do not change."""
    from swift_plugins.fixtures import raw_sources
    from swift_plugins.prepare import prepare

    root = tmp_path / 'raw'
    getattr(raw_sources, build)(root)
    one = prepare(name, root, tmp_path / 'one', workers=1, **options)
    three = prepare(name, root, tmp_path / 'three', workers=3, **options)
    assert one['files'] == three['files']            # every image and row file, byte for byte
    assert one['fingerprint'] == three['fingerprint']  # the worker count is not an input
    for split in one['counts']:
        assert (tmp_path / 'one' / 'data' / f'{split}.jsonl').read_bytes() == \
            (tmp_path / 'three' / 'data' / f'{split}.jsonl').read_bytes()
