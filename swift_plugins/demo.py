"""`medres demo`: the offline tiny end-to-end run (train at native and at low resolution, infer).

Everything is built locally (tiny Qwen2-VL, hub-layout VQA-RAD fixture) and driven through
stock `swift sft` / `swift infer` with the medres plugin, exactly as a real run is.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from rich.console import Console
from rich.table import Table

from .fixtures.hub_vqa import build_local_sources
from .fixtures.tiny_qwen2_vl import build_tiny_qwen2_vl
from .fixtures.tiny_runs import tiny_infer_args, tiny_sft_args
from .train.swift_run import last_checkpoint, run_swift
from .vocabulary import OFFLINE_ENV, POLICY_ENV, Env

console = Console()

# Fixture images are ~112x112 (16 visual tokens); the demo's low budget keeps a quarter of the pixels.
DEMO_LOW_PIXELS = 64 * 64


@dataclass
class ArmResult:
    arm: str
    checkpoint: Path
    predictions: Path
    rows: int
    final_loss: float
    mean_visual_tokens: float
    train_log: Path
    infer_log: Path


def demo_env(workdir: Path, sources: Path, base: Mapping[str, str]) -> dict[str, str]:
    """`base` (the caller's environment) without policy variables, offline, reading the demo's data."""
    return {
        **{k: v for k, v in base.items() if k not in POLICY_ENV and k != Env.TOKEN_LOG},
        **OFFLINE_ENV,
        Env.LOCAL_SOURCES: str(sources),
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


def run_arm(arm: str, workdir: Path, model_dir: Path, env: dict[str, str], max_steps: int) -> ArmResult:
    out = workdir / 'runs' / arm
    tokens_log = out / 'visual_tokens.jsonl'
    for stale in (tokens_log, out / 'predictions' / 'vqa-rad-test.jsonl'):
        if stale.exists():
            stale.unlink()  # ms-swift and the token log append to existing files
    env = {**env, Env.RESOLUTION: arm, Env.LOW_PIXELS: str(DEMO_LOW_PIXELS), Env.TOKEN_LOG: str(tokens_log)}
    run_swift('sft', tiny_sft_args(model_dir, 'medres/vqa-rad', out / 'train', max_steps=max_steps),
              env=env, log_path=out / 'sft.log', title=f'swift sft ({arm} resolution)')
    ckpt = last_checkpoint(out / 'train')
    preds = out / 'predictions' / 'vqa-rad-test.jsonl'
    run_swift('infer', tiny_infer_args(ckpt, 'medres/vqa-rad:test', preds),
              env=env, log_path=out / 'infer.log', title=f'swift infer ({arm} resolution)')
    rows = sum(1 for line in preds.read_text().splitlines() if line.strip())
    infer_tokens = [json.loads(line)['actual_tokens'] for line in tokens_log.read_text().splitlines()
                    if not json.loads(line)['training']]
    return ArmResult(arm, ckpt, preds, rows, final_train_loss(out / 'train'),
                     sum(infer_tokens) / len(infer_tokens), out / 'sft.log', out / 'infer.log')


def run_demo(workdir: Path, base_env: Mapping[str, str], max_steps: int = 4) -> list[ArmResult]:
    workdir = workdir.resolve()
    console.print(f'[bold]medres demo[/bold] in {workdir} (offline; tiny random-weight Qwen2-VL on CPU)')
    model_dir = build_tiny_qwen2_vl(workdir / 'models' / 'tiny-qwen2-vl')
    sources = build_local_sources(workdir / 'sources', names=['vqa-rad'])
    env = demo_env(workdir, sources, base_env)
    results = [run_arm(arm, workdir, model_dir, env, max_steps) for arm in ('native', 'low')]

    table = Table(title='medres demo: where the outputs went')
    for col in ('resolution', 'final loss', 'visual tokens / image', 'checkpoint', 'predictions (rows)'):
        table.add_column(col, overflow='fold')
    for r in results:
        table.add_row(r.arm, f'{r.final_loss:.3f}', f'{r.mean_visual_tokens:.1f}', str(r.checkpoint),
                      f'{r.predictions} ({r.rows})')
    console.print(table)
    console.print(f'logs: {workdir / "runs"}/<resolution>/{{sft,infer}}.log, per-sample visual tokens in '
                  f'{workdir / "runs"}/<resolution>/visual_tokens.jsonl')
    for r in results:
        if not math.isfinite(r.final_loss):
            raise RuntimeError(f'{r.arm}: training loss is not finite ({r.final_loss})')
    return results
