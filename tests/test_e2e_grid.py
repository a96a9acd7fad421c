"""medres grid end to end: tiny Qwen2-VL checkpoints trained at low and native, a 2 x 2 grid
(table, heatmap, McNemar rows), then a run killed in the middle of a cell and resumed."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swift_plugins.fixtures.hub_vqa import FIXTURE_SPECS
from swift_plugins.fixtures.tiny_runs import tiny_sft_args

from helpers import swift

MEDRES = str(Path(sys.executable).parent / 'medres')
LOW = '4096'
N_TEST = FIXTURE_SPECS['vqa-rad']['split_sizes']['test']


@pytest.fixture(scope='module')
def checkpoints(tiny_qwen2_vl, local_sources, tmp_path_factory):
    root = tmp_path_factory.mktemp('grid-ckpts')
    env_backup = dict(os.environ)
    os.environ.update({'MEDRES_LOCAL_SOURCES': str(local_sources), 'MEDRES_LOW_PIXELS': LOW})
    try:
        out = {}
        for arm in ('low', 'native'):
            os.environ['MEDRES_RESOLUTION'] = arm
            swift('sft', tiny_sft_args(tiny_qwen2_vl, 'medres/vqa-rad', root / arm, max_steps=4), root / f'{arm}.log')
            out[arm] = root / arm / 'checkpoint-4'
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    return out


def grid_cmd(checkpoints, workdir):
    return [MEDRES, 'grid', '--arm', f'low={checkpoints["low"]}', '--arm', f'native={checkpoints["native"]}',
            '--dataset', 'vqa-rad', '--inference', 'low', 'native', '--workdir', str(workdir),
            '--low-pixels', LOW, '--n-boot', '300', '--',
            '--model_type', 'qwen2_vl', '--template', 'qwen2_vl', '--torch_dtype', 'float32', '--max_new_tokens', '4']


def cell_dirs(workdir):
    return [workdir / 'cells' / t / 'vqa-rad' / i for t in ('low', 'native') for i in ('low', 'native')]


def check_cells(workdir):
    for d in cell_dirs(workdir):
        rows = [json.loads(line) for line in (d / 'predictions.jsonl').read_text().splitlines()]
        ids = [r['chat_template_kwargs']['medres']['id'] for r in rows]
        assert len(ids) == len(set(ids)) == N_TEST, d
        assert not (d / 'predictions.partial.jsonl').exists()
        tokens = [json.loads(line) for line in (d / 'visual_tokens.jsonl').read_text().splitlines()]
        assert len(tokens) == N_TEST and {t['decision'] for t in tokens} == {d.name}


@pytest.fixture(scope='module')
def resumed(checkpoints, local_sources, tmp_path_factory):
    """A grid run killed in the middle of its second cell, then resumed to the end."""
    workdir = tmp_path_factory.mktemp('grid') / 'resumed'
    env = {**os.environ, 'MEDRES_LOCAL_SOURCES': str(local_sources)}
    run = subprocess.Popen(grid_cmd(checkpoints, workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, env=env)
    first, second = cell_dirs(workdir)[:2]
    deadline = time.time() + 300
    while not ((first / 'done.json').exists() and (second / 'infer.log').exists()):
        assert run.poll() is None and time.time() < deadline
        time.sleep(0.5)
    time.sleep(3)  # well inside swift infer of the second cell
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert not (second / 'done.json').exists()
    first_done = (first / 'done.json').stat().st_mtime_ns

    proc = subprocess.run(grid_cmd(checkpoints, workdir), capture_output=True, text=True, env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (first / 'done.json').stat().st_mtime_ns == first_done   # finished cells are not redone
    return workdir


def test_resumed_grid_has_every_row_once_and_the_papers_layout(resumed):
    check_cells(resumed)
    rows = list(csv.DictReader(open(resumed / 'grid.csv')))
    assert {(r['training'], r['inference']) for r in rows} == {(t, i) for t in ('low', 'native')
                                                                 for i in ('low', 'native')}
    tokens = {(r['training'], r['inference']): float(r['mean_visual_tokens']) for r in rows}
    assert tokens[('native', 'low')] < tokens[('native', 'native')]   # the cells ran at their resolution
    # The table is the cells' own scores.
    for r in rows:
        done = json.loads((resumed / 'cells' / r['training'] / 'vqa-rad' / r['inference'] / 'done.json').read_text())
        assert float(r['value']) == pytest.approx(done['score']['metrics']['closed_accuracy']['value'])
    md = (resumed / 'grid.md').read_text()
    assert md.startswith('| Training | Inference | vqa-rad |') and '| native | low |' in md
    assert (resumed / 'grid.png').stat().st_size > 5000
    comps = list(csv.DictReader(open(resumed / 'comparisons.csv')))
    assert len(comps) == 5 and all(c['p'] not in ('', None) for c in comps)
    assert any(c['claim'] == 'native-trained at low vs aligned low' for c in comps)


@pytest.mark.usefixtures('use_local_sources')
def test_finished_grid_reruns_as_no_op_and_refuses_changed_settings(checkpoints, resumed):
    before = (resumed / 'grid.md').read_text()
    again = subprocess.run(grid_cmd(checkpoints, resumed), capture_output=True, text=True)
    assert again.returncode == 0 and (resumed / 'grid.md').read_text() == before
    changed = subprocess.run([a if a != LOW else '3136' for a in grid_cmd(checkpoints, resumed)],
                             capture_output=True, text=True)
    assert changed.returncode == 2 and 'computed with other settings: the resolution policy changed' in changed.stderr


@pytest.mark.slow
@pytest.mark.usefixtures('use_local_sources')
def test_resumed_grid_equals_an_uninterrupted_one(checkpoints, resumed, tmp_path):
    full = tmp_path / 'full'
    proc = subprocess.run(grid_cmd(checkpoints, full), capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    check_cells(full)
    for name in ('grid.md', 'comparisons.md'):
        assert (resumed / name).read_text() == (full / name).read_text()


@pytest.mark.slow
@pytest.mark.usefixtures('use_local_sources')
def test_zero_shot_sweep_recommends_a_setting(checkpoints, tmp_path):
    cmd = [MEDRES, 'sweep', '--model', str(checkpoints['native']), '--dataset', 'vqa-rad', '--pixels', '1568', '4096',
           '--workdir', str(tmp_path / 'sweep'), '--n-boot', '300', '--',
           '--model_type', 'qwen2_vl', '--template', 'qwen2_vl', '--torch_dtype', 'float32', '--max_new_tokens', '4']
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = list(csv.DictReader(open(tmp_path / 'sweep' / 'sweep.csv')))
    assert [r['setting'] for r in rows] == ['low-1568', 'low-4096', 'native']
    tokens = [float(r['mean_visual_tokens']) for r in rows]
    assert tokens == sorted(tokens) and tokens[0] < tokens[-1]
    assert 'Recommended: **' in (tmp_path / 'sweep' / 'sweep.md').read_text()
    assert (tmp_path / 'sweep' / 'sweep.png').stat().st_size > 5000
