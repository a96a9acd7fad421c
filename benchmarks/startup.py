"""Start-up time of the `medres` commands that neither train nor infer (and two that do import the
ML stack, for scale): wall and CPU (user + system) seconds of a fresh process, median of N runs.
CPU seconds are what a busy shared machine does not inflate much; wall seconds are what you wait.

    python benchmarks/startup.py --runs 7 --out benchmarks/startup.json

The toy dataset (`medres fixtures build toy-vqa`) is registered from a temporary folder, so
`tokens --dataset` reads a local source and no hub is contacted.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
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
            times, cpu = [], []
            for _ in range(args.runs + 1):   # the first run warms the page cache and the datasets cache
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                proc = subprocess.run([MEDRES, *argv], env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                if proc.returncode != 0:
                    raise SystemExit(f'{name} failed: {proc.stderr[-2000:]}')
            results[name] = {'wall_median_s': round(statistics.median(times[1:]), 2),
                             'wall_min_s': round(min(times[1:]), 2), 'cpu_median_s': round(statistics.median(cpu[1:]), 2)}
            r = results[name]
            print(f'{name:80} wall {r["wall_median_s"]:6.2f} s (min {r["wall_min_s"]:.2f}), cpu {r["cpu_median_s"]:.2f} s')
    cpuinfo = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    model = next((line.split(':', 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith('model name')),
                 platform.machine())
    record = {'machine': model, 'python': platform.python_version(),
              'cpus': os.cpu_count(), 'load_average_1min_at_end': round(os.getloadavg()[0], 1), 'runs': args.runs,
              'commands': results}
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + '\n')


if __name__ == '__main__':
    main()
