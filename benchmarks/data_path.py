"""Data-path benchmark: stock ms-swift vs medres on the same images, side by side, on one core.

    taskset -c 0 python benchmarks/data_path.py --out benchmarks/data_path.json

Per case (an image kind of the paper's datasets) and policy (native, low, mixed) it times, from the
encoded file's bytes to the image the model's processor receives:

  stock     what a user runs without medres: ms-swift's `load_image` then `qwen_vl_utils.fetch_image`
            (its Qwen2-VL template's path; bicubic, rounds to 28 px; `MAX_PIXELS`=1003520 for low)
  medres    `resolution.image_cache.load_policy_image`, the template-side decode of a policy run, in
            the configurations: default (lanczos, native_align resize, JPEG draft), bicubic (equal
            filter with stock), crop / pad (native_align), cached (the default's output read back
            from a warm `MEDRES_IMAGE_CACHE`)

Mixed alternates native and low over the case's images, for stock (MAX_PIXELS on every other
image) as for medres. Every configuration is timed once per round, in turn, for `--repeats` rounds
(best round kept), so a busy machine slows all sides alike. Each medres row has
`speedup_vs_stock`; its output sizes and visual tokens are checked against the policy's plan.
`--encode` adds samples/s through the full template encode (tiny Qwen2-VL processor, real
Qwen2-VL image processor) for the workers-per-GPU estimate.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.image_cache import ImageCache, load_policy_image
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.vocabulary import PAPER_LOW_PIXELS

FAMILY = Qwen2VL()
# name, dataset it stands for, size, format, images
CASES = [
    ('cervical-jpeg', 'Cervical (Mendeley JPEG)', (2048, 1536), 'JPEG', 4),
    ('compound-png', 'Compound (16-bit TIFF prepared to PNG)', (1280, 1024), 'PNG', 4),
    ('wsi-jpeg', 'WSI render, 12 MP JPEG', (4000, 3000), 'JPEG', 2),
    ('wsi-png', 'WSI render, 12 MP PNG', (4000, 3000), 'PNG', 2),
    ('vqa-rad-png', 'VQA-RAD (small PNG)', (566, 512), 'PNG', 6),
]
MEDRES = {   # configuration -> policy fields
    'default': {},
    'bicubic': {'filter': 'bicubic'},
    'crop': {'native_align': 'crop'},
    'pad': {'native_align': 'pad'},
}


def content(w: int, h: int, seed: int, deep: bool = False) -> np.ndarray:
    """Stained-tissue-like content: smooth blobs at several scales plus sensor noise."""
    rng = np.random.default_rng(seed)
    out = np.zeros((h, w, 3), np.float32)
    for div in (64, 16, 4):
        small = rng.uniform(0, 1, (max(2, h // div), max(2, w // div), 3)).astype(np.float32)
        out += np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                          np.float32) / 3
    out += rng.normal(0, 6, out.shape)
    if deep:   # a 12-bit camera's range, windowed to 8 bits at the 0.1/99.9 percentiles as `medres prepare` does
        raw = (out.clip(0, 255) * 16).astype(np.uint16)
        lo, hi = np.percentile(raw, [0.1, 99.9])
        return ((raw.astype(np.float32) - lo) / (hi - lo) * 255).clip(0, 255).astype(np.uint8)
    return out.clip(0, 255).astype(np.uint8)


def encode(case: str, w: int, h: int, fmt: str, seed: int) -> bytes:
    arr = content(w, h, seed, deep=case.startswith('compound'))
    img = Image.fromarray(arr[..., 0]) if case.startswith('vqa-rad') else Image.fromarray(arr)  # radiology: gray
    buf = io.BytesIO()
    img.save(buf, fmt, **({'quality': 90} if fmt == 'JPEG' else {'compress_level': 6}))
    return buf.getvalue()


def stock(data: bytes, max_pixels) -> Image.Image:
    from qwen_vl_utils import fetch_image
    from swift.template.vision_utils import load_image
    ele = {'image': load_image(data)}
    if max_pixels:
        ele['max_pixels'] = max_pixels
    return fetch_image(ele)


def decisions(policy: str, n: int) -> list[str]:
    return [policy] * n if policy != 'mixed' else ['native' if i % 2 == 0 else 'low' for i in range(n)]


def bench_case(case, title, size, fmt, n, repeats, cache_root: Path) -> list[dict]:
    w, h = size
    data = [encode(case, w, h, fmt, seed) for seed in range(n)]
    rows = []
    for mode in ('native', 'low', 'mixed'):
        ds = decisions(mode, n)
        runners = {'stock': lambda: [stock(d, PAPER_LOW_PIXELS if dec == 'low' else None) for d, dec in zip(data, ds)]}
        policies = {name: ResolutionPolicy(mode=mode, **fields) for name, fields in MEDRES.items()}
        for name, policy in policies.items():
            runners[name] = (lambda p: lambda: [load_policy_image(d, p, dec, FAMILY)[0] for d, dec in zip(data, ds)])(policy)
        cache = ImageCache(cache_root / case / mode, max_bytes=10 ** 10)
        for d, dec in zip(data, ds):   # warm the cache (the first epoch)
            load_policy_image(d, policies['default'], dec, FAMILY, cache)
        runners['cached'] = lambda: [load_policy_image(d, policies['default'], dec, FAMILY, cache)[0]
                                     for d, dec in zip(data, ds)]
        best = {k: float('inf') for k in runners}
        outputs = {}
        for _ in range(repeats):          # interleaved: every configuration once per round
            for name, fn in runners.items():
                t0 = time.perf_counter()
                outputs[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        for name in runners:
            sizes = sorted({im.size for im in outputs[name]})
            tokens = [FAMILY.tokens(im.size) for im in outputs[name]]
            row = {'case': case, 'dataset': title, 'source': f'{w}x{h} {fmt}', 'policy': mode,
                   'path': 'stock ms-swift' if name == 'stock' else f'medres {name}',
                   'filter': 'bicubic' if name in ('stock', 'bicubic') else 'lanczos',
                   'images_per_s': round(n / best[name], 2), 'output_sizes': [f'{a}x{b}' for a, b in sizes],
                   'mean_visual_tokens': round(float(np.mean(tokens)), 1)}
            if name != 'stock':
                policy = policies['default' if name == 'cached' else name]
                plans = [policy.plan(w, h, dec, FAMILY) for dec in ds]
                assert [im.size for im in outputs[name]] == [p.size for p in plans], (case, mode, name)
                assert tokens == [p.tokens for p in plans], (case, mode, name)
                row['tokens_match_plan'] = True
                row['align'] = sorted({p.align for p in plans})
                row['speedup_vs_stock'] = round(best['stock'] / best[name], 2)
                if name == 'cached':
                    row['speedup_vs_uncached'] = round(best['default'] / best[name], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def bench_encode(repeats: int) -> list[dict]:
    """Samples/s through the whole template encode (decode, policy, Qwen2-VL image processor, tokens)."""
    from swift.model import get_processor
    from swift.template import get_template

    from swift_plugins.fixtures.tiny_qwen2_vl import build_tiny_qwen2_vl
    from swift_plugins.resolution.templates import register_templates

    register_templates()
    model_dir = build_tiny_qwen2_vl(Path(tempfile.mkdtemp(prefix='medres-bench-')) / 'tiny-qwen2-vl')
    proc = get_processor(str(model_dir), model_type='qwen2_vl')
    data = [encode('cervical-jpeg', 2048, 1536, 'JPEG', s) for s in range(4)]
    out = []
    for mode in ('native', 'low', 'mixed'):
        os.environ['MEDRES_RESOLUTION'] = mode   # a script: the template reads the policy from the environment
        t = get_template(proc, template_type='qwen2_vl')
        rows = [{'messages': [{'role': 'user', 'content': '<image>What is shown?'}, {'role': 'assistant', 'content': 'x'}],
                 'images': [{'bytes': d, 'path': None}],
                 'chat_template_kwargs': {'medres': {'id': f'bench/test/{i}', 'mix': {'pos': i, 'n': 4, 'k': 2}}}}
                for i, d in enumerate(data)]
        best = float('inf')
        for _ in range(repeats):
            t0 = time.perf_counter()
            for r in rows:
                t.encode(copy.deepcopy(r))   # encode fills the row in
            best = min(best, time.perf_counter() - t0)
        row = {'source': '2048x1536 JPEG (Cervical)', 'policy': mode, 'samples_per_s_per_worker': round(len(rows) / best, 2)}
        out.append(row)
        print(json.dumps(row), flush=True)
    os.environ.pop('MEDRES_RESOLUTION', None)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--cases', nargs='*', default=[c[0] for c in CASES])
    ap.add_argument('--encode', action='store_true', help='also time the full template encode')
    ap.add_argument('--conditions', default='', help='free text recorded with the figures (machine load, ...)')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    if hasattr(os, 'sched_setaffinity'):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})   # one core, as a dataloader worker
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               platform.processor())
    load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else None
    with tempfile.TemporaryDirectory(prefix='medres-cache-') as cache_root:
        rows = [r for c in CASES if c[0] in args.cases for r in bench_case(*c, args.repeats, Path(cache_root))]
    encode_rows = bench_encode(args.repeats) if args.encode else []
    if args.out:
        args.out.write_text(json.dumps({
            'machine': f'{cpu}, {os.cpu_count()} cores, one used', 'python': platform.python_version(),
            'pillow': Image.__version__, 'repeats': repeats_note(args.repeats), 'load_average_at_start': load,
            'conditions': args.conditions, 'rows': rows, 'template_encode': encode_rows}, indent=1) + '\n')


def repeats_note(n: int) -> str:
    return f'best of {n} interleaved rounds'


if __name__ == '__main__':
    main()
