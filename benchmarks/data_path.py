"""Data-path benchmark: decode alone vs decode + the medres resolution policy, on one core.

    taskset -c 0 python benchmarks/data_path.py --out benchmarks/data_path.json

For each image size and policy (native, low, mixed) it times, per image:
  decode          PIL open + full decode of a PNG
  decode+resize   decode, then PIL's resize to the same target size the policy picks (the bare baseline)
  decode+policy   decode, then `ResolutionPolicy.apply` (decision, family-aligned plan, resize)
and reports images/s and source megapixels/s. The policy's own overhead is
decode+policy vs decode+resize; the target is at most 5%.
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.mixing import MixSlot
from swift_plugins.resolution.policy import RESAMPLE, ResolutionPolicy

SIZES = [(2048, 2048), (1280, 1024)]


def make_png(w: int, h: int, seed: int) -> bytes:
    """Microscopy-like content (smooth blobs + fine texture), PNG-encoded like prepared datasets."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(40):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 120)
        img[..., rng.integers(0, 3)] += 160 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
    img += rng.normal(0, 12, img.shape)
    buf = io.BytesIO()
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(buf, 'PNG', compress_level=1)
    return buf.getvalue()


def run(fn, items, repeats: int) -> float:
    """Best-of-`repeats` seconds for one pass over `items`."""
    best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, time.perf_counter() - t0)
    return best


def bench(size, mode: str, n: int, repeats: int) -> dict:
    w, h = size
    data = [make_png(w, h, s) for s in range(n)]
    family = Qwen2VL()
    policy = ResolutionPolicy(mode=mode)
    slots = [MixSlot(i, n, n // 2) for i in range(n)]  # mixed: exactly half low

    def decode(b):
        im = Image.open(io.BytesIO(b))
        im.load()
        return im

    def decision(i):
        return policy.decide(f'bench/{i}', slots[i])

    targets = [policy.plan(w, h, decision(i), family).size for i in range(n)]
    items = list(range(n))
    t_decode = run(lambda i: decode(data[i]), items, repeats)
    t_bare = run(lambda i: decode(data[i]).resize(targets[i], RESAMPLE['lanczos']), items, repeats)
    t_policy = run(lambda i: policy.apply(decode(data[i]), decision(i), family), items, repeats)
    mp = w * h / 1e6
    row = {'size': f'{w}x{h}', 'policy': mode, 'images': n}
    for name, t in (('decode', t_decode), ('decode+resize', t_bare), ('decode+policy', t_policy)):
        row[f'{name} img/s'] = round(n / t, 2)
        row[f'{name} MP/s'] = round(n * mp / t, 1)
    row['policy overhead vs decode+resize'] = round(t_policy / t_bare - 1, 4)
    # The policy's own work without any pixels: decision + family-aligned plan, per image.
    reps = 2000
    t_logic = run(lambda i: policy.plan(w, h, decision(i % n), family), list(range(reps)), repeats)
    row['policy logic us/img'] = round(1e6 * t_logic / reps, 2)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', type=int, default=8)
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               platform.processor())
    rows = [bench(size, mode, args.images, args.repeats) for size in SIZES for mode in ('native', 'low', 'mixed')]
    for r in rows:
        print(json.dumps(r))
    if args.out:
        args.out.write_text(json.dumps({'machine': cpu, 'python': platform.python_version(),
                                        'pillow': Image.__version__, 'rows': rows}, indent=2) + '\n')


if __name__ == '__main__':
    main()
