"""`medres prepare --workers N` speedup: the Compound converter on full-size fields, 1 vs N workers.

    python benchmarks/prepare_workers.py --out benchmarks/prepare_workers.json

Builds the BBBC021 fixture (plate folders of 16-bit DAPI/Tubulin/Actin TIFFs, as published) at the
real field size, 1280x1024; every converter runs its images through the same
`prepare.common.parallel_map`. Each worker count
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

from swift_plugins.fixtures import raw_sources
from swift_plugins.prepare import prepare
from swift_plugins.settings import Settings


def build(root: Path) -> int:
    raw_sources.BBBC_SIZE = (1024, 1280)   # the fixture's layout at the real field size
    facts = raw_sources.build_bbbc021(root)
    return facts['fields']


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--workers', type=int, nargs='*', default=[1, 2])
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--conditions', default='')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='medres-prep-') as tmp:
        raw = Path(tmp) / 'raw'
        n = build(raw)
        settings = Settings(data_home=Path(tmp) / 'home')
        best = {w: float('inf') for w in args.workers}
        files = {}
        for _ in range(args.repeats):
            for w in args.workers:
                t0 = time.perf_counter()
                m = prepare('compound', raw, Path(tmp) / f'out{w}', force=True, settings=settings, workers=w,
                            split_by='plate', test_fraction=0.25)
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
                                        'dataset': f'compound, {n} fields of 3 x 1280x1024 16-bit TIFFs (BBBC021 layout)',
                                        'repeats': f'best of {args.repeats} interleaved rounds',
                                        'conditions': args.conditions, 'rows': rows}, indent=1) + '\n')


if __name__ == '__main__':
    main()
