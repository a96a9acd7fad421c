"""`medres tokens` speed: header-only sizes of 10^5 images, and the default full decode.

    python benchmarks/tokens_speed.py --images 100000 --decode-images 1000 --out benchmarks/tokens_speed.json

Builds a synthetic registry entry (parquet with an `image` feature, sizes drawn from 300 to
3000 px per side, PNG), then times reading every header through the registry's source path
(`--headers-only`) and costing native / low / mixed for Qwen2-VL. Then a second entry of real
JPEGs (sides 300 to 1500 px) is read the default way, every image decoded as the loader decodes
it, with one worker process and with two.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ENTRY = """name: speed
title: Speed
modality: pathology
task: {kind: closed_vqa}
metric: closed_accuracy
sources: {local: ./speed}
splits: {train: {hub_split: train}}
native_size: {width: 1000, height: 1000}
license: none
citation: none
"""


def build(root: Path, n: int) -> None:
    """A PNG header is all `medres tokens` reads; 1x1-pixel payloads keep generation fast, but the
    IHDR of each file states a size drawn from real-world ranges."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    rng = np.random.default_rng(0)
    sizes = rng.integers(300, 3000, size=(n, 2))
    template = io.BytesIO()
    Image.new('RGB', (1, 1)).save(template, 'PNG')
    raw = template.getvalue()
    rows = []
    for w, h in sizes:
        # Rewrite the IHDR chunk's width/height (bytes 16-24) and its CRC (bytes 29-33).
        ihdr = int(w).to_bytes(4, 'big') + int(h).to_bytes(4, 'big') + raw[24:29]
        data = raw[:16] + ihdr + zlib.crc32(b'IHDR' + ihdr).to_bytes(4, 'big') + raw[33:]
        rows.append({'image': {'bytes': data, 'path': None}, 'question': 'q', 'answer': 'yes'})
    (root / 'speed' / 'data').mkdir(parents=True)
    Dataset.from_list(rows, features=Features({'image': ImageFeature(), 'question': Value('string'),
                                               'answer': Value('string')})
                      ).to_parquet(str(root / 'speed' / 'data' / 'train-00000-of-00001.parquet'))
    (root / 'speed.yaml').write_text(ENTRY)


def build_jpegs(root: Path, n: int) -> None:
    """`decode.yaml`: n real JPEGs (noise, so they do not compress to nothing), sides 300 to 1500 px."""
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature
    rng = np.random.default_rng(1)
    tile = rng.integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
    rows = []
    for w, h in rng.integers(300, 1500, size=(n, 2)):
        buf = io.BytesIO()
        Image.fromarray(tile[:h, :w]).save(buf, 'JPEG', quality=90)
        rows.append({'image': {'bytes': buf.getvalue(), 'path': None}, 'question': 'q', 'answer': 'yes'})
    (root / 'decode' / 'data').mkdir(parents=True)
    Dataset.from_list(rows, features=Features({'image': ImageFeature(), 'question': Value('string'),
                                               'answer': Value('string')})
                      ).to_parquet(str(root / 'decode' / 'data' / 'train-00000-of-00001.parquet'))
    (root / 'decode.yaml').write_text(ENTRY.replace('speed', 'decode'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--images', type=int, default=100_000)
    ap.add_argument('--decode-images', type=int, default=1000)
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build(root, args.images)
        build_jpegs(root, args.decode_images)
        os.environ.update({'HF_DATASETS_CACHE': str(root / 'cache'), 'HF_HUB_OFFLINE': '1'})
        from swift_plugins.data.sizes import load_registry_sizes
        from swift_plugins.resolution.families import Qwen2VL
        from swift_plugins.resolution.policy import ResolutionPolicy
        from swift_plugins.resolution.tokens import policy_costs
        from swift_plugins.settings import Settings
        settings = Settings(registry_dirs=(root,))
        load_registry_sizes(['speed:train'], settings, headers_only=True)   # the parquet -> arrow conversion
        t0 = time.perf_counter()
        splits = load_registry_sizes(['speed:train'], settings, headers_only=True)
        t_headers = time.perf_counter() - t0
        t0 = time.perf_counter()
        costs = {m: policy_costs(splits, Qwen2VL(), ResolutionPolicy(mode=m))[0] for m in ('native', 'low', 'mixed')}
        t_costs = time.perf_counter() - t0
        load_registry_sizes(['decode:train'], settings, headers_only=True)
        decode = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            (sp,) = load_registry_sizes(['decode:train'], settings, workers=workers)
            decode[workers] = time.perf_counter() - t0
            assert len(sp.sizes) == args.decode_images and not sp.refused
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               platform.processor())
    result = {'machine': cpu, 'images': args.images, 'headers_seconds': round(t_headers, 2),
              'headers_per_second': round(args.images / t_headers), 'three_policies_seconds': round(t_costs, 2),
              'decode_images': args.decode_images,
              'decode_seconds': {f'{w}_workers': round(t, 2) for w, t in decode.items()},
              'decode_per_second': {f'{w}_workers': round(args.decode_images / t) for w, t in decode.items()},
              'cost_vs_native': {m: round(c.cost_vs_native, 4) for m, c in costs.items()},
              'mean_tokens': {m: round(c.mean_tokens, 1) for m, c in costs.items()}}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
    main()
