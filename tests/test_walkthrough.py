"""The README's commands, run exactly as written: its first-run walkthrough and "Adding your own dataset".

The commands are read out of README.md (every ```bash block of a section, in order, in one shell,
so `cd` and `export` carry over), so the text and this test cannot drift. A ```text block after a
command block is its expected output: each of its lines must appear, in order, among the lines the
commands printed, whitespace collapsed; a line `...` skips any number of lines, `...` inside a line
stands for any text, and a number with a decimal point for any number (losses and scores depend on
the machine). The fast tests run everything up to the first training run; the slow one runs it all.
"""
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

README = Path(__file__).resolve().parents[1] / 'README.md'
WALKTHROUGH = '## First run: your own dataset'
OWN_DATASET = '### Adding your own dataset'
# The first command block that trains or infers: where the fast subset stops.
HEAVY = re.compile(r'^\s*(swift |medres grid |medres train (?!.*--dry-run))', re.MULTILINE)


@dataclass
class Step:
    commands: str
    expected: Optional[str]


def section(title: str, text: str = None) -> str:
    """The README text under the heading that starts with `title`, up to the next heading of its level or above."""
    text = README.read_text() if text is None else text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    level = len(title) - len(title.lstrip('#'))
    fenced, end = False, len(lines)
    for i in range(start + 1, len(lines)):
        fenced ^= lines[i].startswith('```')
        if not fenced and re.match(r'#{1,%d} ' % level, lines[i]):   # a `# comment` in a code block is no heading
            end = i
            break
    return '\n'.join(lines[start:end])


def steps(text: str) -> list[Step]:
    """Every ```bash block, each with the ```text block that follows it (its expected output)."""
    out: list[Step] = []
    for lang, body in re.findall(r'^```(\w*)\n(.*?)^```$', text, re.MULTILINE | re.DOTALL):
        if lang == 'bash':
            out.append(Step(body, None))
        elif lang == 'text' and out and out[-1].expected is None:
            out[-1].expected = body
    return out


def _collapse(line: str) -> str:
    return ' '.join(line.split())


def line_pattern(expected: str) -> re.Pattern:
    parts = re.split(r'(\.\.\.|\d+\.\d+)', _collapse(expected))
    regex = ''.join('.*' if p == '...' else r'-?\d+(?:\.\d+)?' if re.fullmatch(r'\d+\.\d+', p) else re.escape(p)
                    for p in parts)
    return re.compile(regex)


def missing_line(expected: str, actual: str) -> Optional[str]:
    """The first expected line not found, in order, in `actual`; None when all are."""
    lines = [_collapse(line) for line in re.split(r'[\r\n]+', actual)]
    at = 0
    for want in expected.splitlines():
        if not want.strip() or want.strip() == '...':
            continue
        pattern = line_pattern(want)
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def environment() -> dict[str, str]:
    """The test session's offline environment, no MEDRES_* of the caller, the venv's commands first,
    a 100-column terminal for the tables, and no GPU (the walkthrough documents the CPU path)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('MEDRES_')}
    env['PATH'] = str(Path(sys.executable).parent) + os.pathsep + env.get('PATH', '')
    env.update({'COLUMNS': '100', 'CUDA_VISIBLE_DEVICES': '', 'PYTHONUNBUFFERED': '1'})
    return env


def run_steps(todo: list[Step], cwd: Path) -> list[tuple[str, float]]:
    """Run the blocks in one bash (set -euo pipefail), each block's output to its own file;
    (output, seconds) per block. A failing command fails the test naming its block."""
    logs = cwd / '.steps'
    logs.mkdir()
    script = ['set -euo pipefail']
    for i, step in enumerate(todo):
        script += [f'date +%s.%N > {logs}/{i}.start', '{', step.commands, f'}} > {logs}/{i}.out 2>&1',
                   f'date +%s.%N > {logs}/{i}.end']
    proc = subprocess.run(['bash', '-c', '\n'.join(script)], cwd=cwd, env=environment(),
                          capture_output=True, text=True)
    results = []
    for i, step in enumerate(todo):
        out = (logs / f'{i}.out').read_text() if (logs / f'{i}.out').exists() else ''
        if not (logs / f'{i}.end').exists():
            pytest.fail(f'README block {i} failed (exit {proc.returncode}):\n{step.commands}\n--- its output, last '
                        f'lines:\n{out[-4000:]}\n{proc.stderr[-2000:]}')
        seconds = float((logs / f'{i}.end').read_text()) - float((logs / f'{i}.start').read_text())
        results.append((out, seconds))
    return results


def check_outputs(todo: list[Step], results: list[tuple[str, float]]) -> None:
    for i, (step, (out, _)) in enumerate(zip(todo, results)):
        if step.expected is None:
            continue
        missing = missing_line(step.expected, out)
        assert missing is None, (f'README block {i}: expected line not in its output, in order:\n  {missing}\n'
                                 f'block:\n{step.commands}\n--- output (last lines):\n{out[-6000:]}')


def fast_subset(todo: list[Step]) -> list[Step]:
    heavy = next((i for i, s in enumerate(todo) if HEAVY.search(s.commands)), len(todo))
    return todo[:heavy]


# ------------------------------------------------------------------------------ the matcher itself

def test_expected_output_matching_rules():
    out = 'noise\nmedres train: 4 per GPU x 1 accumulation\r{"loss": "9.594", "step": "30/30"}\nlast line\n'
    assert missing_line('medres train: 4 per GPU x 1 accumulation\n...\nlast line', out) is None
    assert missing_line('...{"loss": "1.5", "step": "30/30"}', out) is None          # decimals: any number
    assert missing_line('...{"loss": "1.5", "step": "20/30"}', out) is not None      # integers: exact
    assert missing_line('last line\nmedres train: 4 per GPU x 1 accumulation', out) is not None   # order
    text = '# t\n## A\n```bash\necho a\n```\n\n```text\na\n```\n```bash\n# no heading\necho b\n```\n## B\n```bash\nx\n```\n'
    got = steps(section('## A', text))
    assert [(s.commands, s.expected) for s in got] == [('echo a\n', 'a\n'), ('# no heading\necho b\n', None)]


def test_the_walkthrough_covers_the_loop_the_issue_lists():
    commands = '\n'.join(s.commands for s in steps(section(WALKTHROUGH)))
    for needed in ('medres fixtures build tiny-qwen2-vl', 'MEDRES_REGISTRY=', 'medres datasets', 'medres tokens',
                   'medres train qwen2-vl-2b-full-mixed', 'swift infer infer-low.yaml', 'swift infer infer-native.yaml',
                   'medres score', 'medres grid --arm none='):
        assert needed in commands, needed
    assert all(s.expected for s in steps(section(WALKTHROUGH))), 'every walkthrough step shows its output'


# ------------------------------------------------------------------------------ the README, run

def test_adding_your_own_dataset_runs_as_written(tmp_path):
    """Both local layouts (jsonl + images, and the hub's parquet) register and read the same images."""
    todo = steps(section(OWN_DATASET))
    assert len(todo) >= 3
    check_outputs(todo, run_steps(todo, tmp_path))
    assert sorted(p.name for p in (tmp_path / 'my_scans_parquet' / 'data').iterdir()) == \
        ['test-00000-of-00001.parquet', 'train-00000-of-00001.parquet']


def test_walkthrough_up_to_training_runs_as_written(tmp_path):
    """The fast part: fixtures, the YAML entry, `medres datasets`, `medres tokens`, the training plan
    (CPU without DeepSpeed, the too-few-steps warning)."""
    todo = fast_subset(steps(section(WALKTHROUGH)))
    assert any('--dry-run' in s.commands for s in todo)
    check_outputs(todo, run_steps(todo, tmp_path))
    model = tmp_path / 'first-run' / 'models' / 'tiny-qwen2-vl'
    assert json.loads((model / 'config.json').read_text())['model_type'] == 'qwen2_vl'
    assert (model / 'model.safetensors').is_file() and (model / 'tokenizer.json').is_file()


@pytest.mark.slow
def test_walkthrough_runs_as_written_end_to_end(tmp_path):
    todo = steps(section(WALKTHROUGH))
    start = time.perf_counter()
    results = run_steps(todo, tmp_path)
    wall = time.perf_counter() - start
    check_outputs(todo, results)
    run = tmp_path / 'first-run'
    # Trained at mixed resolution with the shell's low scale, as step 4 says.
    policy = json.loads((run / 'output' / 'qwen2-vl-2b-full-mixed' / 'medres_policy.json').read_text())['policy']
    assert policy['mode'] == 'mixed' and policy['low_scale'] == 0.5
    # The grid's mixed cells are step 5's runs again: the same scores as step 6's.
    grid = {(r['training'], r['inference']): r for r in
            __import__('csv').DictReader(open(run / 'grid' / 'grid.csv'))}
    for resolution in ('low', 'native'):
        out = subprocess.run(['medres', 'score', '--dataset', 'toy', '--predictions', f'predictions/{resolution}.jsonl',
                              '--json'], cwd=run, env={**environment(), 'MEDRES_REGISTRY': str(run / 'registry')},
                             capture_output=True, text=True, check=True).stdout
        assert float(grid[('mixed', resolution)]['value']) == json.loads(out)['metrics']['closed_accuracy']['value']
    print(f'\nwalkthrough: {wall:.0f} s; per block: ' + ', '.join(f'{s:.0f}' for _, s in results))
