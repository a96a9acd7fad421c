"""`medres fixtures`: the offline stand-ins as a command, and the commands that neither train nor
infer start without importing ms-swift, torch or transformers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swift_plugins.fixtures.toy_dataset import SIZES, ToySpec, build_toy_vqa

MEDRES = str(Path(sys.executable).parent / 'medres')


def medres(*args, cwd=None, expect=0):
    proc = subprocess.run([MEDRES, *args], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_fixtures_list_and_build_the_toy_dataset_in_both_layouts(tmp_path):
    from swift_plugins.cli.fixtures import build
    from swift_plugins.errors import UsageError

    listed = medres('fixtures', 'list')
    for name in ('tiny-qwen2-vl', 'tiny-internvl', 'tiny-llava-onevision', 'toy-vqa'):
        assert name in listed
    out = medres('fixtures', 'build', 'toy-vqa', 'toy', cwd=tmp_path)
    assert 'built toy-vqa in toy' in out and 'jsonl layout' in out
    rows = {s: [json.loads(line) for line in (tmp_path / 'toy' / 'data' / f'{s}.jsonl').read_text().splitlines()]
            for s in ('train', 'test')}
    assert [len(r) for r in rows.values()] == [40, 16]
    for split_rows in rows.values():   # balanced yes / no
        assert sum(r['answer'] == 'yes' for r in split_rows) * 2 == len(split_rows)
        assert {r['answer'] for r in split_rows} == {'yes', 'no'}
    from PIL import Image
    assert {Image.open(tmp_path / 'toy' / r['image']).size for r in rows['train']} == set(SIZES)
    # Nothing in the folder that `datasets` could take for a split file or a card.
    assert not (tmp_path / 'toy' / 'README.md').exists()
    assert not any(w in p.name for p in (tmp_path / 'toy' / 'images').iterdir() for w in ('train', 'test', 'val'))
    before = (tmp_path / 'toy' / 'data' / 'train.jsonl').stat().st_mtime_ns
    build('toy-vqa', tmp_path / 'toy')   # idempotent
    assert (tmp_path / 'toy' / 'data' / 'train.jsonl').stat().st_mtime_ns == before

    build('toy-vqa', tmp_path / 'pq', layout='parquet')
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / 'pq' / 'data' / 'train-00000-of-00001.parquet')
    assert table.num_rows == 40 and set(table.column_names) == {'image', 'question', 'answer'}
    assert table.column('answer').to_pylist() == [r['answer'] for r in rows['train']]   # the same rows
    with pytest.raises(UsageError, match='applies to toy-vqa only'):
        build('tiny-qwen2-vl', tmp_path / 'm', layout='parquet')


def test_toy_dataset_is_deterministic_per_seed(tmp_path):
    a = build_toy_vqa(tmp_path / 'a', ToySpec(seed=0, n_train=6, n_test=2))
    b = build_toy_vqa(tmp_path / 'b', ToySpec(seed=0, n_train=6, n_test=2))
    c = build_toy_vqa(tmp_path / 'c', ToySpec(seed=1, n_train=6, n_test=2))
    assert (a / 'data' / 'train.jsonl').read_text() == (b / 'data' / 'train.jsonl').read_text()
    assert (a / 'images' / '0003.png').read_bytes() == (b / 'images' / '0003.png').read_bytes()
    assert (a / 'images' / '0003.png').read_bytes() != (c / 'images' / '0003.png').read_bytes()


HEAVY = ('swift', 'torch', 'transformers', 'datasets', 'deepspeed')
PROBE = """
import sys
from swift_plugins.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))
print('HEAVY', heavy, file=sys.stderr)
"""


@pytest.mark.parametrize('argv', [['datasets'], ['score', '--help'], ['tokens', '--help'], ['grid', '--help'],
                                  ['train', '--help'], ['fixtures', 'list'], ['recipes', 'list'], ['plugin-path'],
                                  ['tokens', '--jsonl', 'JSONL']])
def test_commands_that_do_not_train_or_infer_import_no_ml_stack(argv, tmp_path):
    """Start-up stays well under a second (benchmarks/startup.json): none of these imports ms-swift,
    torch, transformers or datasets."""
    if 'JSONL' in argv:
        from PIL import Image
        Image.new('RGB', (56, 84)).save(tmp_path / 'a.png')
        (tmp_path / 'x.jsonl').write_text(json.dumps({'messages': [{'role': 'user', 'content': '<image>?'}],
                                                      'images': ['a.png']}) + '\n')
        argv = [str(tmp_path / 'x.jsonl') if a == 'JSONL' else a for a in argv]
    proc = subprocess.run([sys.executable, '-c', PROBE.format(argv=argv, heavy=HEAVY)], capture_output=True, text=True,
                          env={**os.environ, 'COLUMNS': '120'})
    assert 'HEAVY []' in proc.stderr, proc.stderr[-2000:]
