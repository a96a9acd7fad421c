"""`medres demo`: the offline tiny end-to-end run (train at native and at low resolution, infer).

Everything is built locally (tiny Qwen2-VL, hub-layout VQA-RAD fixture) and driven through
stock `swift sft` / `swift infer` with the medres plugin, exactly as a real run is.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .fixtures.hub_vqa import build_local_sources
from .fixtures.tiny_qwen2_vl import build_tiny_qwen2_vl
from .fixtures.tiny_runs import tiny_infer_args, tiny_sft_args
from .sources import LOCAL_SOURCES_ENV
from .swift_run import OFFLINE_ENV, last_checkpoint, run_swift

console = Console()

# Fixture images are ~112x112 (16 visual tokens); the demo's low budget keeps a quarter of the pixels.
DEMO_LOW_MAX_PIXELS = 56 * 56


@dataclass
class ArmResult:
    arm: str
    checkpoint: Path
    predictions: Path
    rows: int
    final_loss: float
    train_log: Path
    infer_log: Path


def demo_env(workdir: Path, sources: Path) -> dict[str, str]:
    return {
        **OFFLINE_ENV,
        LOCAL_SOURCES_ENV: str(sources),
        # Keep the demo's dataset caches inside its folder.
        'MODELSCOPE_CACHE': str(workdir / 'cache' / 'modelscope'),
        'HF_DATASETS_CACHE': str(workdir / 'cache' / 'hf-datasets'),
    }


def final_train_loss(output_dir: Path) -> float:
    losses = []
    for line in (output_dir / 'logging.jsonl').read_text().splitlines():
        rec = json.loads(line)
        if 'loss' in rec:
            losses.append(float(rec['loss']))
    if not losses:
        raise RuntimeError(f'no loss logged in {output_dir / "logging.jsonl"}')
    return losses[-1]


def run_arm(arm: str, workdir: Path, model_dir: Path, env: dict[str, str], resolution_args: list[str],
            max_steps: int) -> ArmResult:
    out = workdir / 'runs' / arm
    run_swift('sft', tiny_sft_args(model_dir, 'medres/vqa-rad', out / 'train', max_steps=max_steps)
              + resolution_args, env=env, log_path=out / 'sft.log', title=f'swift sft ({arm} resolution)')
    ckpt = last_checkpoint(out / 'train')
    preds = out / 'predictions' / 'vqa-rad-test.jsonl'
    if preds.exists():
        preds.unlink()  # ms-swift appends to an existing result file
    run_swift('infer', tiny_infer_args(ckpt, 'medres/vqa-rad:test', preds) + resolution_args,
              env=env, log_path=out / 'infer.log', title=f'swift infer ({arm} resolution)')
    rows = sum(1 for line in preds.read_text().splitlines() if line.strip())
    return ArmResult(arm, ckpt, preds, rows, final_train_loss(out / 'train'), out / 'sft.log', out / 'infer.log')


def run_demo(workdir: Path, max_steps: int = 4) -> list[ArmResult]:
    workdir = workdir.resolve()
    console.print(f'[bold]medres demo[/bold] in {workdir} (offline; tiny random-weight Qwen2-VL on CPU)')
    model_dir = build_tiny_qwen2_vl(workdir / 'models' / 'tiny-qwen2-vl')
    sources = build_local_sources(workdir / 'sources', names=['vqa-rad'])
    env = demo_env(workdir, sources)
    arms = {'native': [], 'low': ['--max_pixels', str(DEMO_LOW_MAX_PIXELS)]}
    results = [run_arm(arm, workdir, model_dir, env, args, max_steps) for arm, args in arms.items()]

    table = Table(title='medres demo: where the outputs went')
    for col in ('arm', 'final loss', 'checkpoint', 'predictions (rows)'):
        table.add_column(col)
    for r in results:
        table.add_row(r.arm, f'{r.final_loss:.3f}', str(r.checkpoint), f'{r.predictions} ({r.rows})')
    console.print(table)
    console.print(f'logs: {workdir / "runs"}/<arm>/{{sft,infer}}.log')
    for r in results:
        if not math.isfinite(r.final_loss):
            raise RuntimeError(f'{r.arm}: training loss is not finite ({r.final_loss})')
    return results
