"""vLLM vs transformers behind stock `swift infer`, with the medres policy, on a CPU.

1. Inference-loop throughput (requests/s, ms-swift's own `samples/s`: the time of the inference
   calls, without start-up) of both backends on the same tiny cells, and their ratio.
2. End-to-end time of a 2 x 3 `medres grid` (2 training arms x low/native/mixed inference, on two
   datasets: 12 cells) with each backend: transformers runs one `swift infer` per cell, vLLM one
   engine per (arm, inference resolution) for both datasets.

Run in the environment `.ci/vllm-env` builds (tiny random-weight Qwen2-VL, vLLM-compatible heads):

    .venv-vllm/bin/python benchmarks/vllm_backend.py --out benchmarks/vllm_backend.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from swift_plugins.vocabulary import Env

BIN = Path(sys.executable).parent
ENGINE_ENV = {'VLLM_CPU_KVCACHE_SPACE': '1', 'VLLM_ENABLE_V1_MULTIPROCESSING': '0'}
ENGINE_ARGS = ['--vllm_enforce_eager', 'true', '--vllm_max_model_len', '16384']
TINY = ['--model_type', 'qwen2_vl', '--template', 'qwen2_vl', '--torch_dtype', 'float32', '--max_new_tokens', '8']


def machine() -> str:
    model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                  if line.startswith('model name')), platform.processor())
    mem = int(next(line.split()[1] for line in Path('/proc/meminfo').read_text().splitlines()
                   if line.startswith('MemTotal'))) / 2 ** 20
    return f'{model}, {os.cpu_count()} cores, {mem:.0f} GiB, no GPU'


def sources(root: Path, rows: int) -> Path:
    import numpy as np
    from PIL import Image

    from swift_plugins.fixtures.hub_vqa import write_hub_layout
    rng = np.random.default_rng(0)
    for name in ('vqa-rad', 'slake'):
        out = []
        for i in range(rows):
            w, h = int(rng.integers(400, 900)), int(rng.integers(300, 700))
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, 'PNG')
            out.append({'image': {'bytes': buf.getvalue(), 'path': None}, 'question': 'Is there a lesion?',
                        'answer': 'yes' if i % 2 else 'no'})
        splits = {'test': out} if name == 'vqa-rad' else {'train': out, 'validation': out, 'test': out}
        write_hub_layout(root / name, splits)
    return root


def infer_rate(model: Path, backend: str, resolution: str, env: dict, work: Path) -> dict:
    from swift_plugins.train.swift_run import PLUGIN_PATH
    log = work / f'{backend}-{resolution}.log'
    argv = [str(BIN / 'swift'), 'infer', '--external_plugins', str(PLUGIN_PATH), '--model', str(model), *TINY,
            '--val_dataset', 'medres/vqa-rad:test', '--result_path', str(work / f'{backend}-{resolution}.jsonl'),
            '--infer_backend', backend, '--temperature', '0', '--max_batch_size', '8',
            *(ENGINE_ARGS if backend == 'vllm' else [])]
    start = time.perf_counter()
    with open(log, 'w') as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=True,
                       env={**env, Env.RESOLUTION: resolution, **(ENGINE_ENV if backend == 'vllm' else {})})
    wall = time.perf_counter() - start
    stats = re.findall(r"'samples/s': ([0-9.]+)", log.read_text())
    return {'backend': backend, 'resolution': resolution, 'requests_per_s': float(stats[-1]), 'wall_s': round(wall, 1)}


def grid_time(models: list[Path], backend: str, env: dict, work: Path) -> float:
    argv = [str(BIN / 'medres'), 'grid', '--arm', f'none={models[0]}', '--arm', f'native={models[1]}',
            '--dataset', 'vqa-rad', '--dataset', 'slake', '--inference', 'low', 'native', 'mixed',
            '--low-pixels', '50176', '--n-boot', '200', '--workdir', str(work / f'grid-{backend}'),
            '--infer-backend', backend, '--', *TINY, *(ENGINE_ARGS if backend == 'vllm' else [])]
    start = time.perf_counter()
    with open(work / f'grid-{backend}.log', 'w') as f:
        subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, check=True,
                       env={**env, **(ENGINE_ENV if backend == 'vllm' else {})})
    return round(time.perf_counter() - start, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rows', type=int, default=32, help='test rows per dataset')
    ap.add_argument('--no-grid', action='store_true', help='only the requests/s comparison')
    ap.add_argument('--out', type=Path)
    args = ap.parse_args()

    from swift_plugins.fixtures.tiny_qwen2_vl import VLLM_QWEN2_VL_SPEC, build_tiny_qwen2_vl
    work = Path(tempfile.mkdtemp(prefix='medres-vllm-bench-'))
    models = [build_tiny_qwen2_vl(work / f'model-{seed}', replace(VLLM_QWEN2_VL_SPEC, seed=seed)) for seed in (0, 1)]
    env = {**os.environ, 'HF_HUB_OFFLINE': '1', 'MODELSCOPE_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1',
           Env.LOCAL_SOURCES: str(sources(work / 'sources', args.rows)), Env.LOW_PIXELS: '50176'}
    rates = [infer_rate(models[0], backend, resolution, env, work)
             for resolution in ('low', 'native') for backend in ('transformers', 'vllm')]
    ratio = {r: next(x['requests_per_s'] for x in rates if x['backend'] == 'vllm' and x['resolution'] == r)
             / next(x['requests_per_s'] for x in rates if x['backend'] == 'transformers' and x['resolution'] == r)
             for r in ('low', 'native')}
    result = {'machine': machine(), 'rows': args.rows, 'rates': rates,
              'vllm_over_transformers': {k: round(v, 2) for k, v in ratio.items()}}
    if not args.no_grid:
        result['grid_2x3_seconds'] = {b: grid_time(models, b, env, work) for b in ('transformers', 'vllm')}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
    main()
