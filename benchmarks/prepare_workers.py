"""`medres prepare --workers N` speedup: the Cervical converter on full-size images, 1 vs N workers.

    python benchmarks/prepare_workers.py --out benchmarks/prepare_workers.json

Builds a raw folder in the Mendeley layout (four class folders of 2048x1536 JPEGs, as published);
every converter runs its images through the same `prepare.common.parallel_map`. Each worker count
is timed once per round, in turn (best of `--repeats`, forced rebuilds); the outputs are checked
to be identical.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from swift_plugins.fixtures.raw_sources import CERVICAL_FOLDERS
from swift_plugins.prepare import prepare
from swift_plugins.settings import Settings


def build(root: Path, per_class: int) -> int:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    n = 0
    for folder in CERVICAL_FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.fromarray(np.roll(base, i, axis=1)).resize((2048, 1536), Image.Resampling.BICUBIC)
            arr = np.asarray(img, np.int16) + rng.integers(-8, 8, (1536, 2048, 3))
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(root / folder / f'{i + 1}.jpg', quality=90)
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--per-class', type=int, default=12)
    ap.add_argument('--workers', type=int, nargs='*', default=[1, 2])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--conditions', default='')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='medres-prep-') as tmp:
        raw = Path(tmp) / 'raw'
        n = build(raw, args.per_class)
        settings = Settings(data_home=Path(tmp) / 'home')
        best = {w: float('inf') for w in args.workers}
        files = {}
        for _ in range(args.repeats):
            for w in args.workers:
                t0 = time.perf_counter()
                m = prepare('cervical', raw, Path(tmp) / f'out{w}', force=True, settings=settings, workers=w,
                            test_size=8)
                best[w] = min(best[w], time.perf_counter() - t0)
                files[w] = m['files']
        assert all(f == files[args.workers[0]] for f in files.values()), 'outputs differ between worker counts'
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               platform.processor())
    base = best[args.workers[0]]
    rows = [{'workers': w, 'seconds': round(best[w], 2), 'images_per_s': round(n / best[w], 2),
             'speedup_vs_1': round(base / best[w], 2)} for w in args.workers]
    for r in rows:
        print(json.dumps(r))
    if args.out:
        args.out.write_text(json.dumps({'machine': f'{cpu}, {os.cpu_count()} cores', 'python': platform.python_version(),
                                        'dataset': f'cervical, {n} JPEGs of 2048x1536 in the Mendeley layout',
                                        'repeats': f'best of {args.repeats} interleaved rounds',
                                        'conditions': args.conditions, 'rows': rows}, indent=1) + '\n')


if __name__ == '__main__':
    main()
