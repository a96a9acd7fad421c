"""The README's demo command, run as a user runs it."""
import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_medres_demo_runs_offline(tmp_path):
    workdir = tmp_path / 'demo'
    proc = subprocess.run([str(Path(sys.executable).parent / 'medres'), 'demo', '--workdir', str(workdir)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'where the outputs went' in proc.stdout
    for arm in ('native', 'low'):
        preds = workdir / 'runs' / arm / 'predictions' / 'vqa-rad-test.jsonl'
        rows = [json.loads(line) for line in preds.read_text().splitlines()]
        assert len(rows) == 12
        assert list((workdir / 'runs' / arm / 'train').glob('checkpoint-*/model.safetensors'))
