"""The study: plan, train every arm, the train x inference grid, the zero-shot sweep, the report.

`<workdir>/` holds `plan.md` / `plan.json`, `arms/<dataset>/<arm>/` (each arm's training run),
`grid/` (the grid's cells, `grid.csv/.md`, `comparisons.csv/.md`), `sweep/<dataset>/` (when asked),
`study.json` (configuration, timings, every cell) and `report/` (`index.html`, `report.md`,
`figures/`). Every stage resumes: a finished arm is not retrained and a finished cell not
recomputed; one made with other settings is refused with what changed (`--redo` recomputes it).
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Optional, Sequence

from rich.console import Console
from rich.markdown import Markdown
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..data.registry import Entry, get_entry
from ..data.spec import DatasetSpec
from ..errors import UsageError
from ..eval.grid import (
    CellResult,
    GridConfig,
    comparisons,
    comparisons_markdown,
    markdown_table,
    run_cells,
    table_rows,
    write_csv,
)
from ..eval.paper import paper_model
from ..eval.sweep import DEFAULT_BUDGETS, SweepRow, recommend, summarize, sweep_cells
from ..eval.sweep import markdown as sweep_markdown
from ..eval.sweep import plot as sweep_plot
from ..probe.config import ProbeConfig
from ..resolution.families import get_family
from ..settings import Settings
from ..train.launch import batch_plan
from ..train.recipes import RECIPES_DIR
from ..vocabulary import INFERENCE_MODES, PAPER_GLOBAL_BATCH, POLICY_ENV, TRAINING_ARMS, Env
from . import arms as arm_runs
from .model import ModelRef, model_config
from .plan import ArmPlan, ModelShape, model_shape, plan_arm, plan_markdown, plan_record, policy_for
from .report import versions, write_report

console = Console()
TUNINGS = ('full', 'lora')
# Progress bars estimate the time left from the average speed of the work done in this run.
_ETA_WINDOW_S = 7 * 24 * 3600


def progress_bar(what: str) -> Progress:
    return Progress(TextColumn(f'[bold]{what}' + ' {task.description}'), BarColumn(), MofNCompleteColumn(),
                    TextColumn('elapsed'), TimeElapsedColumn(), TextColumn('left'), TimeRemainingColumn(),
                    TextColumn('{task.fields[now]}'), console=console, speed_estimate_period=_ETA_WINDOW_S)


@dataclass
class StudyConfig:
    """One study: a model, its datasets, the arms, how to train and evaluate them."""
    workdir: Path
    model: ModelRef
    datasets: list[str]
    arms: tuple[str, ...] = TRAINING_ARMS
    inferences: tuple[str, ...] = INFERENCE_MODES
    tuning: str = 'full'
    sweep: bool = False
    sweep_budgets: tuple[int, ...] = DEFAULT_BUDGETS
    sweep_split: Optional[str] = None         # default: validation where the dataset has one, else test
    nproc_per_node: int = 1
    micro_batch: int = 1
    global_batch: int = PAPER_GLOBAL_BATCH
    zero3: bool = False
    train_split: str = 'train'
    eval_split: str = 'test'
    swift_args: tuple[str, ...] = ()          # the user's flags for every swift sft (after `--`)
    train_args: tuple[str, ...] = ()          # the study's own swift sft flags (the toy's), before the user's
    infer_args: tuple[str, ...] = ()          # flags for every swift infer
    policy_overrides: dict = field(default_factory=dict)   # MEDRES_* over the recipes', training and inference
    env_extra: dict = field(default_factory=dict)          # other variables every run gets
    mode: str = 'strict'
    n_boot: int = 2000
    bootstrap_seed: int = 0
    tokens_per_second: Optional[float] = None
    redo: bool = False
    settings: Settings = field(default_factory=Settings)
    base_env: Mapping[str, str] = field(default_factory=dict)
    title: str = ''
    probe: Optional[ProbeConfig] = None
    command_line: str = ''

    def __post_init__(self):
        if self.tuning not in TUNINGS:
            raise UsageError(f'--tuning must be one of {TUNINGS}, got {self.tuning!r}')
        unknown = [a for a in self.arms if a not in TRAINING_ARMS]
        if unknown or not self.arms:
            raise UsageError(f'--arms: each one of {", ".join(TRAINING_ARMS)}, got {", ".join(self.arms) or "none"}')
        if not self.datasets:
            raise UsageError('a study needs at least one --dataset')
        self.workdir = Path(self.workdir).resolve()

    @property
    def trained_arms(self) -> list[str]:
        return [a for a in self.arms if a != 'none']

    def entries(self) -> list[Entry]:
        out = []
        for text in self.datasets:
            spec = DatasetSpec.parse(text)
            if spec.splits or spec.rows:
                raise UsageError(f'--dataset {text!r}: give the name only; --train-split / --eval-split choose splits')
            entry = get_entry(spec.name, self.settings.registry_dirs)
            for split in (self.train_split, self.eval_split):
                if split not in entry.splits:
                    raise UsageError(f'{entry.registered_name} has no split {split!r} ({", ".join(entry.splits)})')
            out.append(entry)
        return out

    def recipe(self, arm: str) -> Path:
        return RECIPES_DIR / 'train' / f'{self.model.recipe_key}-{self.tuning}-{arm}.yaml'

    def run_env(self) -> dict[str, str]:
        """The environment of every swift run, less its policy: the user's shell without its policy
        variables (the recipes and the study's overrides decide), the settings, `env_extra`."""
        clean = {k: v for k, v in self.base_env.items() if k not in POLICY_ENV and k != Env.TOKEN_LOG}
        return {**clean, **self.settings.to_env(), **self.env_extra}

    def launcher(self, recipe: Path) -> list[str]:
        return ['train', str(recipe), '--nproc-per-node', str(self.nproc_per_node), '--micro-batch',
                str(self.micro_batch), '--global-batch', str(self.global_batch), *(['--zero3'] if self.zero3 else [])]

    def launcher_text(self) -> str:
        plan = batch_plan(self.micro_batch, self.nproc_per_node, 1, self.global_batch)
        return f'`medres train`, {plan.describe()}' + (', DeepSpeed ZeRO-3' if self.zero3 else '')

    def arm_swift_args(self, entry: Entry, folder: Path) -> list[str]:
        return [*self.model.swift_args(), '--dataset', f'{entry.registered_name}:{self.train_split}',
                '--output_dir', str(folder / 'train'), '--add_version', 'false', *self.train_args, *self.swift_args]

    def infer_model_args(self) -> list[str]:
        # The untrained base folder has no args.json from which swift infer could read these.
        return [] if self.model.is_recipe_default else ['--model_type', self.model.model_type,
                                                        '--template', self.model.template]

    def jobs(self, entries: Sequence[Entry]) -> list[arm_runs.ArmJob]:
        data = {'local_sources': str(self.settings.local_sources or ''), 'data_home': str(self.settings.data_home),
                'registry': [str(d) for d in self.settings.registry_dirs]}
        out = []
        for entry in entries:
            for arm in self.trained_arms:
                folder = self.workdir / 'arms' / entry.name / arm
                recipe = self.recipe(arm)
                out.append(arm_runs.make_job(
                    dataset=entry.name, arm=arm, recipe=recipe, folder=folder, launcher=self.launcher(recipe),
                    swift_args=self.arm_swift_args(entry, folder), env={**self.run_env(), **self.policy_overrides},
                    model=self.model.model, entry_sha256=entry.fingerprint(), policy=self.policy_overrides, data=data,
                    tuning=self.tuning))
        return out


@dataclass
class SweepResult:
    dataset: str
    rows: list[SweepRow]
    best: SweepRow
    cheapest: SweepRow
    markdown: str
    results: list[CellResult]


@dataclass
class StudyResult:
    config: StudyConfig
    plans: list[ArmPlan]
    shape: Optional[ModelShape]
    plan_md: str
    arms: list[arm_runs.ArmResult] = field(default_factory=list)
    cells: list[CellResult] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    grid_md: str = ''
    comparisons_md: str = ''
    sweeps: list[SweepResult] = field(default_factory=list)
    probe: Optional[dict] = None          # pattern checks and cue breakdown when the study is the probe
    paper: Optional[str] = None           # the paper's model name when it has numbers for this model
    seconds: dict[str, float] = field(default_factory=dict)
    started: str = ''
    report_html: Optional[Path] = None
    report_md: Optional[Path] = None

    @property
    def wall_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def probe_holds(self) -> Optional[bool]:
        return None if self.probe is None else all(c['holds'] for c in self.probe['checks'])


# ------------------------------------------------------------------------------ plan

def split_sizes(entry: Entry, split: str, settings: Settings) -> tuple[Optional[list[tuple[int, int]]], str]:
    """Image sizes of a split from the headers; when the data cannot be read here, the registry's row
    count at its native size (an estimate, said so), or None with the reason."""
    from ..data.sizes import registry_sizes
    from ..data.sources import resolve_source
    try:
        source = resolve_source(entry, None, settings)
        if source.kind.startswith('local') and not Path(source.dataset_id).exists():
            raise FileNotFoundError(f'{source.dataset_id} does not exist')   # before importing ms-swift's hub code
        return list(registry_sizes(entry, split, settings, source, headers_only=True).sizes), 'image headers'
    except Exception as e:   # whatever the hub or the folder says: the plan falls back and says why
        reason = f'{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ""}'
    rows = entry.splits[split].rows
    if rows:
        size = (entry.native_size.width, entry.native_size.height)
        return [size] * rows, (f'the registry\'s {rows:,} rows at its native size {size[0]}x{size[1]} '
                               f'(the data is not readable here: {reason})')
    return None, f'the data is not readable here ({reason}) and the registry gives no row count'


def make_plan(config: StudyConfig, entries: Sequence[Entry]) -> tuple[list[ArmPlan], Optional[ModelShape], str]:
    from ..train.launch import batch_plan as check_batch
    check_batch(config.micro_batch, config.nproc_per_node, 1, config.global_batch)   # refuses an impossible batch early
    cfg = model_config(config.model.model) if config.model.local else model_config(config.model.recipe_key) \
        if config.model.is_recipe_default else None
    shape = model_shape(cfg) if cfg else None
    family = get_family(config.model.template)
    from ..eval.grid import recipe_env
    plans = []
    for entry in entries:
        sizes, source = split_sizes(entry, config.train_split, config.settings)
        for arm in config.trained_arms:
            recipe = config.recipe(arm)
            policy = policy_for(recipe_env(recipe), config.policy_overrides)
            plans.append(plan_arm(entry, config.train_split, arm, str(recipe.relative_to(RECIPES_DIR.parent)),
                                  recipe.read_text(), policy, family, sizes, source,
                                  swift_args=[*config.train_args, *config.swift_args], global_batch=config.global_batch,
                                  shape=shape, tokens_per_second=config.tokens_per_second))
    md = plan_markdown(plans, shape, config.launcher_text())
    return plans, shape, md


# ------------------------------------------------------------------------------ stages

def train_arms(config: StudyConfig, jobs: Sequence[arm_runs.ArmJob], plans: Sequence[ArmPlan]) -> list[arm_runs.ArmResult]:
    steps = {(p.dataset, p.arm): p.steps for p in plans}
    done = {id(j): arm_runs.check_finished(j, config.redo) for j in jobs}
    todo = [j for j in jobs if done[id(j)] is None]
    per_job = {id(j): steps.get((j.dataset, j.arm)) for j in todo}
    by_steps = all(per_job.values())
    results = {id(j): r for j, r in ((j, done[id(j)]) for j in jobs) if r is not None}
    cached = len(jobs) - len(todo)
    with progress_bar('train') as progress:
        desc = f'{len(todo)} arm(s)' + (f', {cached} finished before' if cached else '') + (' (steps)' if by_steps else '')
        task = progress.add_task(desc, total=sum(per_job.values()) if by_steps else len(todo), now='')
        finished = 0
        for job in todo:
            progress.update(task, now=f'{job.dataset} {job.arm}')

            def on_step(step, base=finished, job=job):
                if by_steps:
                    progress.update(task, completed=base + min(step, per_job[id(job)]))
            results[id(job)] = arm_runs.train(job, on_step=on_step)
            finished += per_job[id(job)] if by_steps else 1
            progress.update(task, completed=finished)
        progress.update(task, now='done')
    return [results[id(j)] for j in jobs]


def grid_cells(config: StudyConfig, entries: Sequence[Entry], checkpoints: Mapping[tuple[str, str], str]):
    grid = None
    cells = []
    for entry in entries:
        arm_map = {a: (config.model.model if a == 'none' else checkpoints[(entry.name, a)]) for a in config.arms}
        grid = GridConfig(config.workdir / 'grid', arm_map, [entry.name], list(config.inferences), config.eval_split,
                          dict(config.policy_overrides), tuple(config.infer_model_args() + list(config.infer_args)),
                          config.mode, None, config.n_boot, config.bootstrap_seed, settings=config.settings,
                          env=config.run_env())
        cells += grid.cells()
    return grid, cells


def run_sweep_stage(config: StudyConfig, entries: Sequence[Entry]) -> list[SweepResult]:
    out = []
    for entry in entries:
        name = f'{entry.name}:{config.sweep_split}' if config.sweep_split else entry.name
        cells = sweep_cells(config.model.model, name, config.sweep_budgets,
                            config.infer_model_args() + list(config.infer_args), config.mode,
                            settings=config.settings, env={**config.run_env(), **config.policy_overrides})
        folder = config.workdir / 'sweep' / entry.name
        results = run_cells(cells, lambda s: folder / 'cells' / s.split / s.inference, env=config.run_env(),
                            settings=config.settings, redo=config.redo, n_boot=config.n_boot,
                            seed=config.bootstrap_seed, title=f'sweep {entry.name}')
        rows = summarize(results)
        best, cheapest = recommend(rows)
        md = sweep_markdown(rows, best, cheapest)
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(folder / 'sweep.csv', [vars(r) for r in rows])
        (folder / 'sweep.md').write_text(md)
        sweep_plot(folder / 'sweep.png', rows, f'{config.model.model}: {entry.name}:{cells[0].split} (zero-shot)')
        out.append(SweepResult(entry.name, rows, best, cheapest, md, results))
    return out


def probe_section(config: StudyConfig, cells: Sequence[CellResult]) -> Optional[dict]:
    """The probe's pattern checks and cue breakdown, when the study runs on the probe dataset."""
    from ..eval.scoring import read_rows, rows_path
    from ..probe.config import hue_agreement
    from ..probe.generator import ENTRY_NAME, dataset_root
    from ..probe.pattern import cue_breakdown, pattern_checks
    if config.probe is None or ENTRY_NAME not in [DatasetSpec.parse(d).name for d in config.datasets]:
        return None
    rows = {(r.spec.train, r.spec.inference): read_rows(rows_path(r.path / 'score.json'))
            for r in cells if r.spec.dataset == ENTRY_NAME}
    try:
        checks = pattern_checks(get_entry(ENTRY_NAME, config.settings.registry_dirs), rows,
                                coarse_ceiling=config.probe.data.coarse_agreement, n_boot=config.n_boot,
                                seed=config.probe.seed)
    except ValueError as e:   # arms or inferences left out: the pattern cannot be stated
        return {'checks': [], 'breakdown': {}, 'skipped': str(e)}
    dataset = dataset_root(config.probe.data, config.settings.data_home) / ENTRY_NAME
    from dataclasses import asdict
    return {'checks': [asdict(c) for c in checks],
            'breakdown': cue_breakdown(rows, hue_agreement(dataset, config.eval_split))}


def run_study(config: StudyConfig, *, plan_only: bool = False) -> StudyResult:
    started = datetime.now(timezone.utc).isoformat(timespec='seconds')
    t0 = time.perf_counter()
    config.workdir.mkdir(parents=True, exist_ok=True)
    entries = config.entries()
    ignored = sorted(k for k in config.base_env if k in POLICY_ENV)
    if ignored:
        console.print(f'medres study: not using {", ".join(ignored)} from the shell: each arm\'s recipe sets its '
                      'resolution; --low-pixels, --low-scale, --native-max-pixels, --mix-seed and --filter change '
                      'the policy of the whole study', style='yellow', highlight=False)
    with console.status('planning: reading image headers'):
        plans, shape, plan_md = make_plan(config, entries)
    (config.workdir / 'plan.md').write_text(plan_md)
    (config.workdir / 'plan.json').write_text(json.dumps(plan_record(plans, shape), indent=1) + '\n')
    console.print(Markdown(f'**Plan** ({config.title or config.model.model})\n\n' + plan_md))
    result = StudyResult(config, plans, shape, plan_md, started=started)
    result.paper = paper_model(config.model.model) if config.model.is_recipe_default else None
    result.seconds['plan'] = time.perf_counter() - t0
    if plan_only:
        return result

    t = time.perf_counter()
    jobs = config.jobs(entries)
    result.arms = train_arms(config, jobs, plans)
    result.seconds['arms'] = time.perf_counter() - t
    fresh = {(a.dataset, a.arm) for a in result.arms if not a.cached}
    checkpoints = {(a.dataset, a.arm): str(a.checkpoint) for a in result.arms}

    t = time.perf_counter()
    grid, cells = grid_cells(config, entries, checkpoints)
    for spec in cells:   # a retrained arm's cells were computed from its old checkpoint
        if (spec.dataset, spec.train) in fresh:
            (grid.cell_dir(spec) / 'done.json').unlink(missing_ok=True)
    result.cells = run_cells(cells, grid.cell_dir, env=grid.env, settings=config.settings, redo=config.redo,
                             n_boot=config.n_boot, seed=config.bootstrap_seed, title='grid')
    result.rows = table_rows(result.cells, result.paper)
    result.comparisons = comparisons(result.cells, n_boot=config.n_boot, seed=config.bootstrap_seed)
    result.grid_md = markdown_table(result.rows, result.paper is not None)
    result.comparisons_md = comparisons_markdown(result.comparisons) if result.comparisons else ''
    g = config.workdir / 'grid'
    write_csv(g / 'grid.csv', result.rows)
    (g / 'grid.md').write_text(result.grid_md)
    if result.comparisons:
        write_csv(g / 'comparisons.csv', result.comparisons)
        (g / 'comparisons.md').write_text(result.comparisons_md)
    result.probe = probe_section(config, result.cells)
    result.seconds['grid'] = time.perf_counter() - t

    if config.sweep:
        t = time.perf_counter()
        result.sweeps = run_sweep_stage(config, entries)
        result.seconds['sweep'] = time.perf_counter() - t

    t = time.perf_counter()
    result.seconds['report'] = 0.0
    result.report_html, result.report_md = write_report(result)
    result.seconds['report'] = time.perf_counter() - t
    write_record(result)
    return result


def write_record(result: StudyResult) -> Path:
    c = result.config
    record = {
        'title': c.title, 'model': vars(c.model), 'datasets': c.datasets, 'arms': list(c.arms),
        'inferences': list(c.inferences), 'tuning': c.tuning, 'command_line': c.command_line,
        'launcher': c.launcher_text(), 'swift_args': list(c.swift_args), 'train_args': list(c.train_args),
        'infer_args': list(c.infer_args), 'policy_overrides': c.policy_overrides, 'started_utc': result.started,
        'seconds': {k: round(v, 1) for k, v in result.seconds.items()}, 'wall_seconds': round(result.wall_seconds, 1),
        'arms_trained': [{'dataset': a.dataset, 'arm': a.arm, 'checkpoint': str(a.checkpoint), 'seconds': a.seconds,
                          'cached': a.cached, 'final_loss': a.losses[-1] if a.losses else None} for a in result.arms],
        'cells': [{**row, 'policy': r.spec.policy, 'cell': str(r.path)} for row, r in zip(result.rows, result.cells)],
        'comparisons': result.comparisons,
        'sweeps': [{'dataset': s.dataset, 'rows': [vars(r) for r in s.rows], 'best': s.best.setting,
                    'cheapest': s.cheapest.setting} for s in result.sweeps],
        'probe': None if result.probe is None else {**result.probe, 'pattern_holds': result.probe_holds,
                                                     'config': _asdict(c.probe), 'config_key': c.probe.key()},
        'report': str(result.report_html), 'versions': versions(), 'python': platform.python_version(),
    }
    path = c.workdir / 'study.json'
    path.write_text(json.dumps(record, indent=2, default=str) + '\n')
    return path


def _asdict(obj):
    from dataclasses import asdict
    return asdict(obj)
