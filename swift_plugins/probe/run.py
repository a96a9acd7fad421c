"""`medres probe`: generate the probe data, train the low / native / mixed arms through the
recipes, run `medres grid` over {none, low, native, mixed} x {low, native, mixed}, and check the
paper's pattern on it.

Everything lands in `<workdir>/<size>-seed<seed>-<config key>/`: `arms/<resolution>/` (training
logs, checkpoint, per-sample visual tokens), `grid/` (the grid's cells, tables, heatmap and paired
tests), `probe.json` (configuration, timings, every cell, the pattern checks) and `pattern.md`.
A rerun reuses finished arms and cells, so an interrupted probe resumes; another configuration
gets another folder, never a cell trained on other data.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..data.registry import get_entry
from ..eval.grid import GridConfig, GridReport, run_grid
from ..eval.scoring import read_rows, rows_path
from ..resolution.mixing import sample_id
from ..settings import Settings
from ..vocabulary import Env
from .arms import (
    TRAIN_RESOLUTIONS,
    ProbeConfig,
    build_probe_model,
    infer_overrides,
    prepare_probe,
    probe_env,
    probe_settings,
    train_arm,
)
from .generator import ENTRY_NAME
from .pattern import PatternCheck, breakdown_markdown, checks_markdown, cue_breakdown, pattern_checks

console = Console()


@dataclass
class ProbeReport:
    config: ProbeConfig
    folder: Path
    grid: GridReport
    checks: list[PatternCheck]
    breakdown: dict[str, dict]        # 'train/inference' -> accuracy where the hue is right / wrong
    train_seconds: dict[str, float]
    wall_seconds: float

    @property
    def holds(self) -> bool:
        return all(c.holds for c in self.checks)


def hue_agreement(dataset: Path, split: str) -> dict[str, bool]:
    """Row id -> whether the image's stain hue names its class, from the prepared rows."""
    rows = [json.loads(line) for line in (dataset / 'data' / f'{split}.jsonl').read_text().splitlines()]
    return {sample_id(ENTRY_NAME, split, i): r['stain'] == r['answer'] for i, r in enumerate(rows)}


def probe_folder(config: ProbeConfig, workdir: Path) -> Path:
    return Path(workdir).resolve() / f'{config.size}-seed{config.seed}-{config.key()}'


def train_all(config: ProbeConfig, folder: Path, env: Mapping[str, str]) -> tuple[dict[str, Path], dict[str, float]]:
    """The untrained base ('none') and the three trained arms, with a progress bar per step."""
    model_dir = build_probe_model(config, folder)
    checkpoints, seconds = {'none': model_dir}, {}
    columns = [TextColumn('[bold]train {task.fields[arm]:<6}'), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        for arm in TRAIN_RESOLUTIONS:
            task = progress.add_task('', total=config.train.max_steps, arm=arm)
            run = train_arm(config, arm, folder, env=env, model_dir=model_dir,
                            on_step=lambda step, task=task: progress.update(task, completed=step))
            progress.update(task, completed=config.train.max_steps)
            checkpoints[arm], seconds[arm] = run.checkpoint, run.seconds
    return checkpoints, seconds


def run_probe(config: ProbeConfig, workdir: Path, *, settings: Settings, base_env: Mapping[str, str],
              n_boot: int = 2000) -> ProbeReport:
    """Everything runs in `base_env` (the caller's environment) plus the probe's own variables."""
    start = time.perf_counter()
    folder = probe_folder(config, workdir)
    folder.mkdir(parents=True, exist_ok=True)
    console.print(config.describe(), highlight=False)
    with console.status(f'writing the probe images ({config.data.n_train} train, {config.data.n_test} test)'):
        dataset = prepare_probe(config, settings.data_home)
    env = probe_env(config, settings.data_home, base=base_env)
    checkpoints, train_seconds = train_all(config, folder, env)
    grid_config = GridConfig(folder / 'grid', {k: str(v) for k, v in checkpoints.items()}, [ENTRY_NAME],
                             policy_overrides={Env.LOW_PIXELS: str(config.low_pixels)},
                             extra_args=tuple(infer_overrides(config)), n_boot=n_boot, seed=config.seed,
                             settings=probe_settings(config, settings), env=env)
    grid = run_grid(grid_config)
    rows = {(r.spec.train, r.spec.inference): read_rows(rows_path(r.path / 'score.json')) for r in grid.results}
    checks = pattern_checks(get_entry(ENTRY_NAME, settings.registry_dirs), rows, coarse_ceiling=config.data.coarse_agreement,
                            n_boot=n_boot, seed=config.seed)
    breakdown = cue_breakdown(rows, hue_agreement(dataset, 'test'))
    report = ProbeReport(config, folder, grid, checks, breakdown, train_seconds, time.perf_counter() - start)
    write_report(report)
    return report


def write_report(report: ProbeReport) -> None:
    cells = {f'{r.spec.train}/{r.spec.inference}': {
        'accuracy': r.value, 'ci_low': r.metric('ci_low'), 'ci_high': r.metric('ci_high'), 'n': r.metric('n'),
        'mean_visual_tokens': r.mean_visual_tokens, 'policy': r.spec.policy, 'cell': str(r.path)}
        for r in report.grid.results}
    record = {'config': asdict(report.config), 'config_key': report.config.key(), 'cells': cells,
              'train_seconds': report.train_seconds, 'wall_seconds': round(report.wall_seconds, 1),
              'pattern_holds': report.holds, 'checks': [asdict(c) for c in report.checks],
              'cue_breakdown': report.breakdown}
    (report.folder / 'probe.json').write_text(json.dumps(record, indent=2) + '\n')
    (report.folder / 'pattern.md').write_text(f'{report.config.describe()}\n\n{report.grid.markdown}\n'
                                              f'{checks_markdown(report.checks)}\n{breakdown_markdown(report.breakdown)}')
