"""Start-up time of the `medres` commands that neither train nor infer (and two that do import the
ML stack, for scale): wall seconds of a fresh process, median of N runs.

    python benchmarks/startup.py --runs 7 --out benchmarks/startup.json

The toy dataset (`medres fixtures build toy-vqa`) is registered from a temporary folder, so
`tokens --dataset` reads a local source and no hub is contacted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEDRES = str(Path(sys.executable).parent / 'medres')
ENTRY = """name: toy
title: Toy
modality: radiology
task: {kind: closed_vqa}
metric: closed_accuracy
sources: {local: ../toy}
splits: {train: {hub_split: train}, test: {hub_split: test}}
native_size: {width: 336, height: 336}
license: none
citation: none
"""


def commands(root: Path) -> dict[str, list[str]]:
    return {
        'medres --help': ['--help'],
        'medres datasets': ['datasets'],
        'medres score --help': ['score', '--help'],
        'medres tokens --jsonl (56 images)': ['tokens', '--jsonl', str(root / 'swift.jsonl')],
        'medres tokens --dataset (56 images; imports ms-swift for its hub loader)': ['tokens', '--dataset', 'toy'],
        'medres train --dry-run (imports torch to find GPUs)': ['train', 'qwen2-vl-2b-full-mixed', '--dry-run', '--',
                                                                '--dataset', 'medres/toy'],
    }


def setup(root: Path) -> dict[str, str]:
    subprocess.run([MEDRES, 'fixtures', 'build', 'toy-vqa', str(root / 'toy')], check=True, capture_output=True)
    (root / 'registry').mkdir()
    (root / 'registry' / 'toy.yaml').write_text(ENTRY)
    # The same images as an ms-swift jsonl (`messages` + `images`), for `tokens --jsonl`.
    with open(root / 'swift.jsonl', 'w') as f:
        for split in ('train', 'test'):
            for line in (root / 'toy' / 'data' / f'{split}.jsonl').read_text().splitlines():
                row = json.loads(line)
                f.write(json.dumps({'messages': [{'role': 'user', 'content': '<image>' + row['question']},
                                                 {'role': 'assistant', 'content': row['answer']}],
                                    'images': [str(root / 'toy' / row['image'])]}) + '\n')
    return {**os.environ, 'MEDRES_REGISTRY': str(root / 'registry'), 'HF_HUB_OFFLINE': '1', 'MODELSCOPE_OFFLINE': '1',
            'HF_DATASETS_CACHE': str(root / 'hf-datasets'), 'COLUMNS': '120'}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=7)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = setup(root)
        results = {}
        for name, argv in commands(root).items():
            times = []
            for _ in range(args.runs + 1):   # the first run warms the page cache and the datasets cache
                start = time.perf_counter()
                proc = subprocess.run([MEDRES, *argv], env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    raise SystemExit(f'{name} failed: {proc.stderr[-2000:]}')
            results[name] = {'median_s': round(statistics.median(times[1:]), 2), 'min_s': round(min(times[1:]), 2)}
            print(f'{name:80} {results[name]["median_s"]:6.2f} s (min {results[name]["min_s"]:.2f})')
    record = {'machine': platform.processor() or platform.machine(), 'python': platform.python_version(),
              'cpus': os.cpu_count(), 'load_average_1min': round(os.getloadavg()[0], 1), 'runs': args.runs,
              'commands': results}
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + '\n')


if __name__ == '__main__':
    main()
