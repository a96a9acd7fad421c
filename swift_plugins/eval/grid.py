"""`medres grid`: training resolution x inference resolution x dataset, as the paper's tables.

Each cell is one stock `swift infer` run (the inference recipe for its resolution) of one
checkpoint on one registry split, then scored. Cells live in `<workdir>/cells/<train>/<dataset>/
<inference>/`; a cell counts as done only when its `done.json` is written, after its predictions
were complete, unique and scored. A killed run therefore restarts at the first unfinished cell,
discards that cell's partial output, and never duplicates or loses prediction rows. A cell is keyed
by content (the inference recipe's text, the registry entry, the checkpoint's files, the policy and
the flags): a cell computed with other settings is refused instead of silently reused.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..data.registry import Entry, get_entry
from ..data.spec import DatasetSpec
from ..errors import GridError, RunError
from ..resolution.policy import ResolutionPolicy
from ..settings import Settings
from ..train.recipes import RECIPES_DIR
from ..train.swift_run import run_swift
from ..vocabulary import INFERENCE_MODES, POLICY_ENV, TRAINING_ARMS, Env
from .predictions import read_predictions
from .scoring import read_rows, rows_path, score_predictions, write_rows

console = Console()

# The paper's claims as paired comparisons (train, inference) A -> B; reported as B - A.
COMPARISONS = [
    ('native vs low, both aligned', ('low', 'low'), ('native', 'native')),
    ('native-trained: low inference vs native', ('native', 'native'), ('native', 'low')),
    ('native-trained at low vs aligned low', ('low', 'low'), ('native', 'low')),
    ('low-trained: native inference vs low', ('low', 'low'), ('low', 'native')),
    ('low-trained at native vs aligned native', ('native', 'native'), ('low', 'native')),
    ('mixed vs native-trained, native inference', ('native', 'native'), ('mixed', 'native')),
    ('mixed vs low-trained, low inference', ('low', 'low'), ('mixed', 'low')),
]


@dataclass(frozen=True)
class CellSpec:
    """Everything that determines a cell's predictions; recorded in its done.json."""
    train: str
    checkpoint: str
    dataset: str
    split: str
    inference: str            # label: low / native / mixed (or a sweep setting)
    recipe: str               # recipes/infer/<resolution>.yaml
    policy: dict              # the effective MEDRES_* policy variables
    extra_args: tuple = ()
    mode: str = 'strict'
    # What produced the cell, by content: a cell is reused only when all of these are unchanged.
    recipe_sha256: str = ''           # the inference recipe's text (temperature, max_new_tokens, ...)
    entry_sha256: str = ''            # the registry entry (prompt, labels, metric, ...)
    checkpoint_fingerprint: str = ''  # the checkpoint's files (names, sizes, times), or the hub id

    def as_record(self) -> dict:
        d = asdict(self)
        d['extra_args'] = list(self.extra_args)
        return d


# How a changed field of a recorded cell is named to the user.
_CHANGE_NAMES = {
    'recipe_sha256': 'the inference recipe\'s contents (e.g. temperature, max_new_tokens)',
    'entry_sha256': 'the registry entry (e.g. its prompt, labels or metric)',
    'checkpoint_fingerprint': 'the checkpoint\'s files', 'checkpoint': 'the checkpoint path',
    'policy': 'the resolution policy', 'extra_args': 'the flags passed to swift infer', 'mode': 'the scoring mode',
    'recipe': 'the inference recipe path',
}


def sha256_text(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_fingerprint(checkpoint: str) -> str:
    """A checkpoint folder by its files' names, sizes and modification times (a hub id by itself):
    retraining into the same folder changes it, reading it does not."""
    root = Path(checkpoint)
    if not root.exists():
        return f'id:{checkpoint}'
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            st = p.stat()
            h.update(f'{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()


def make_spec(train: str, checkpoint: str, entry: Entry, split: str, inference: str, recipe: Path,
              policy: dict, extra_args: Sequence[str], mode: str) -> CellSpec:
    return CellSpec(train, str(checkpoint), entry.name, split, inference, str(recipe), policy, tuple(extra_args), mode,
                    recipe_sha256=sha256_text(recipe), entry_sha256=entry.fingerprint(),
                    checkpoint_fingerprint=checkpoint_fingerprint(str(checkpoint)))


@dataclass
class CellResult:
    spec: CellSpec
    path: Path
    score: dict
    mean_visual_tokens: Optional[float]
    cached: bool

    @property
    def value(self) -> Optional[float]:
        return self.score['metrics'][self.score['primary']]['value']

    def metric(self, key: str) -> Optional[float]:
        return self.score['metrics'][self.score['primary']][key]


def recipe_env(recipe: Path) -> dict[str, str]:
    return {k: str(v) for k, v in (yaml.safe_load(recipe.read_text()).get('ENV') or {}).items()}


def effective_policy(recipe: Path, env: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """What the run will see: the recipe's ENV, under the policy variables of `env` (the user's
    shell: ms-swift lets it win over a recipe), under `overrides`."""
    shell = {k: v for k, v in env.items() if k in POLICY_ENV}
    policy = ResolutionPolicy.from_env({**recipe_env(recipe), **shell, **overrides})
    if policy is None:
        raise GridError(f'{recipe}: no {Env.RESOLUTION} for this cell')
    return policy.to_env()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + '.tmp')
    tmp.write_text(text)
    os.replace(tmp, path)


def swift_env(base: Mapping[str, str], settings: Settings, policy: Mapping[str, str],
              token_log: Path) -> dict[str, str]:
    """A cell's complete environment: `base` without any policy variable of its own, then the
    settings, the cell's policy and its token log."""
    clean = {k: v for k, v in base.items() if not (k in POLICY_ENV or k == Env.TOKEN_LOG)}
    return {**clean, **settings.to_env(), **policy, Env.TOKEN_LOG: str(token_log)}


def _recorded(spec: CellSpec, cell_dir: Path) -> Optional[CellResult]:
    """The cell's result when it is done with these settings; None when it has to run."""
    done = cell_dir / 'done.json'
    if not done.is_file():
        return None
    recorded = json.loads(done.read_text())
    now = spec.as_record()
    if recorded['spec'] != now:
        changed = sorted(k for k in set(recorded['spec']) | set(now) if recorded['spec'].get(k) != now.get(k))
        what = '; '.join(_CHANGE_NAMES.get(k, k) for k in changed)
        raise GridError(f'{cell_dir} was computed with other settings: {what} changed since. '
                        '--redo recomputes it (or use another --workdir)')
    return CellResult(spec, cell_dir, recorded['score'], recorded.get('mean_visual_tokens'), cached=True)


def _start(cell_dir: Path) -> None:
    cell_dir.mkdir(parents=True, exist_ok=True)
    for stale in ('predictions.partial.jsonl', 'predictions.jsonl', 'visual_tokens.jsonl', 'score.json'):
        (cell_dir / stale).unlink(missing_ok=True)  # a killed attempt's leftovers: this cell starts over
    rows_path(cell_dir / 'score.json').unlink(missing_ok=True)


def _infer(specs: Sequence[CellSpec], run_dir: Path, *, env: Mapping[str, str], settings: Settings,
           label: str) -> tuple[Path, Path]:
    """One `swift infer` of `specs` (same checkpoint, recipe, policy and flags) on all their datasets;
    its predictions and token log."""
    spec = specs[0]
    partial, tokens = run_dir / 'predictions.partial.jsonl', run_dir / 'visual_tokens.jsonl'
    datasets = [str(DatasetSpec(s.dataset, (s.split,))) for s in specs]
    try:
        run_swift('infer', ['--model', spec.checkpoint, '--val_dataset', *datasets, '--result_path', str(partial),
                            *spec.extra_args],
                  config=Path(spec.recipe), log_path=run_dir / 'infer.log', env=swift_env(env, settings, spec.policy, tokens),
                  spinner=False, title=f'swift infer ({label})')
    except RunError as e:
        raise RunError(f'{label}: {e}') from None
    return partial, tokens


def _finish(spec: CellSpec, cell_dir: Path, *, settings: Settings, n_boot: int, seed: int) -> CellResult:
    """Score the cell's predictions.partial.jsonl and visual_tokens.jsonl; done.json written last."""
    partial, tokens, preds = (cell_dir / 'predictions.partial.jsonl', cell_dir / 'visual_tokens.jsonl',
                              cell_dir / 'predictions.jsonl')
    entry = get_entry(spec.dataset, settings.registry_dirs)
    if not partial.is_file():
        raise GridError(f'{partial}: swift infer wrote no predictions (see {cell_dir / "infer.log"})')
    predictions = read_predictions(partial, entry.name)  # refuses duplicated ids
    if not predictions:
        raise GridError(f'{partial}: swift infer wrote no predictions (see {cell_dir / "infer.log"})')
    score, rows = score_predictions(entry, predictions, spec.mode, n_boot=n_boot, seed=seed)
    token_counts = [json.loads(line).get('actual_tokens') for line in tokens.read_text().splitlines()] \
        if tokens.is_file() else []
    token_counts = [t for t in token_counts if t is not None]
    mean_tokens = sum(token_counts) / len(token_counts) if token_counts else None
    write_rows(rows_path(cell_dir / 'score.json'), rows)
    _atomic_write(cell_dir / 'score.json', json.dumps(score.to_dict(), indent=2) + '\n')
    os.replace(partial, preds)
    record = {'spec': spec.as_record(), 'score': score.to_dict(), 'n_predictions': len(predictions),
              'mean_visual_tokens': mean_tokens}
    _atomic_write(cell_dir / 'done.json', json.dumps(record, indent=2) + '\n')  # last: the cell is done only now
    return CellResult(spec, cell_dir, record['score'], mean_tokens, cached=False)


def run_cell(spec: CellSpec, cell_dir: Path, *, env: Mapping[str, str], settings: Settings, n_boot: int = 2000,
             seed: int = 0, on_start: Callable[[], None] = lambda: None) -> CellResult:
    cached = _recorded(spec, cell_dir)
    if cached is not None:
        return cached
    on_start()
    _start(cell_dir)
    _infer([spec], cell_dir, env=env, settings=settings,
           label=f'cell {spec.train} -> {spec.inference} on {spec.dataset}:{spec.split}')
    return _finish(spec, cell_dir, settings=settings, n_boot=n_boot, seed=seed)


# ------------------------------------------------------------------------------ engine groups

ENGINE_BACKENDS = ('vllm',)


def infer_backend(spec: CellSpec) -> str:
    """The backend a cell's `swift infer` uses: the last --infer_backend of its flags, else its recipe's."""
    backend = None
    args = list(spec.extra_args)
    for i, arg in enumerate(args):
        if arg in ('--infer_backend', '--infer-backend') and i + 1 < len(args):
            backend = args[i + 1]
        elif arg.startswith(('--infer_backend=', '--infer-backend=')):
            backend = arg.split('=', 1)[1]
    if backend is None:
        backend = str((yaml.safe_load(Path(spec.recipe).read_text()) or {}).get('infer_backend', 'transformers'))
    return backend


def engine_group(spec: CellSpec) -> Optional[tuple]:
    """Cells that one engine serves (same checkpoint, recipe, policy and flags: only the dataset
    differs), or None for a backend that loads the model per run anyway."""
    if infer_backend(spec) not in ENGINE_BACKENDS:
        return None
    return (spec.train, spec.checkpoint, spec.inference, spec.recipe, json.dumps(spec.policy, sort_keys=True),
            spec.extra_args)


def _split_jsonl(path: Path, targets: Mapping[tuple, Path], key: Callable[[dict], tuple], what: str) -> None:
    """Distribute the lines of `path` over `targets` by `key(row)`; a row of no target is an error."""
    handles = {k: open(p, 'w') for k, p in targets.items()}
    try:
        if path.is_file():
            with open(path, encoding='utf-8') as f:
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    k = key(json.loads(line))
                    if k not in handles:
                        raise GridError(f'{path}:{line_no}: {what} row of {k}, which no cell of this run evaluates')
                    handles[k].write(line if line.endswith('\n') else line + '\n')
    finally:
        for h in handles.values():
            h.close()


def run_engine_group(specs: Sequence[CellSpec], dirs: Sequence[Path], *, env: Mapping[str, str], settings: Settings,
                     n_boot: int = 2000, seed: int = 0, on_start: Callable[[], None] = lambda: None) -> list[CellResult]:
    """The cells of one engine group: the finished ones as recorded, the rest in ONE `swift infer`
    (one engine start for all their datasets), whose predictions and token log are split by the
    rows' medres metadata (dataset, split) into the cells, then scored one by one."""
    done = {i: _recorded(s, d) for i, (s, d) in enumerate(zip(specs, dirs))}
    pending = [i for i, r in done.items() if r is None]
    if len(pending) == 1:
        i = pending[0]
        done[i] = run_cell(specs[i], dirs[i], env=env, settings=settings, n_boot=n_boot, seed=seed, on_start=on_start)
    elif pending:
        on_start()
        for i in pending:
            _start(dirs[i])
        first = specs[pending[0]]
        run_dir = Path(os.path.commonpath([str(dirs[i]) for i in pending])) / f'{first.inference}.engine'
        run_dir.mkdir(parents=True, exist_ok=True)
        names = ', '.join(f'{specs[i].dataset}:{specs[i].split}' for i in pending)
        partial, tokens = _infer([specs[i] for i in pending], run_dir, env=env, settings=settings,
                                 label=f'cells {first.train} -> {first.inference} on {names} (one engine)')
        by = {(specs[i].dataset, specs[i].split): dirs[i] for i in pending}

        def medres_key(row: dict) -> tuple:
            meta = (row.get('chat_template_kwargs') or {}).get('medres') or {}
            return meta.get('dataset'), meta.get('split')

        _split_jsonl(partial, {k: d / 'predictions.partial.jsonl' for k, d in by.items()}, medres_key, 'a prediction')
        _split_jsonl(tokens, {k: d / 'visual_tokens.jsonl' for k, d in by.items()},
                     lambda r: (r.get('dataset'), r.get('split')), 'a visual-token')
        for d in by.values():
            (d / 'infer.log').write_text(f'(one swift infer served {names}: {run_dir / "infer.log"})\n')
        for i in pending:
            done[i] = _finish(specs[i], dirs[i], settings=settings, n_boot=n_boot, seed=seed)
        partial.unlink(missing_ok=True)
    return [done[i] for i in range(len(specs))]


@dataclass
class GridConfig:
    workdir: Path
    arms: dict[str, str]                      # training label -> checkpoint (none -> base model)
    datasets: list[str]
    inferences: list[str] = field(default_factory=lambda: list(INFERENCE_MODES))
    split: str = 'test'
    policy_overrides: dict[str, str] = field(default_factory=dict)
    extra_args: tuple = ()
    mode: str = 'strict'
    paper_model: Optional[str] = None
    n_boot: int = 2000
    seed: int = 0
    redo: bool = False
    settings: Settings = field(default_factory=Settings)
    # The environment every `swift infer` starts from (the user's shell, for the CLI); its
    # policy variables count as the user's settings, as ms-swift lets them win over a recipe.
    env: Mapping[str, str] = field(default_factory=dict)

    def cells(self) -> list[CellSpec]:
        out = []
        for train, ckpt in self.arms.items():
            for dataset in self.datasets:
                spec = DatasetSpec.parse(dataset)
                entry = get_entry(spec.name, self.settings.registry_dirs)
                split = single_split(spec, entry, self.split)
                for inference in self.inferences:
                    recipe = RECIPES_DIR / 'infer' / f'{inference}.yaml'
                    if not recipe.is_file():
                        raise GridError(f'no inference recipe {recipe} (inference must be one of {INFERENCE_MODES})')
                    overrides = {**self.policy_overrides, Env.RESOLUTION: inference}
                    out.append(make_spec(train, ckpt, entry, split, inference, recipe,
                                         effective_policy(recipe, self.env, overrides), self.extra_args, self.mode))
        return out

    def cell_dir(self, spec: CellSpec) -> Path:
        return self.workdir / 'cells' / spec.train / spec.dataset / spec.inference


def single_split(spec: DatasetSpec, entry: Entry, default: str) -> str:
    """The one split a grid or sweep cell evaluates."""
    splits = spec.splits or (default,)
    if len(splits) != 1 or splits[0] not in entry.splits:
        raise GridError(f'{entry.registered_name} has no split {"/".join(splits)!r} ({sorted(entry.splits)}); '
                        f'a cell evaluates one split')
    return splits[0]


def run_cells(cells: Sequence[CellSpec], cell_dir: Callable[[CellSpec], Path], *, env: Mapping[str, str],
              settings: Settings, redo: bool = False, n_boot: int = 2000, seed: int = 0,
              title: str = 'grid') -> list[CellResult]:
    """Run (or reuse) every cell, with one progress bar: cells to compute, elapsed time and the time
    left at the average pace of the cells computed so far (finished cells do not count, so a resumed
    run's estimate is not flattered by them). Cells of one engine group (`engine_group`: vLLM) run in
    one `swift infer`, so one engine start serves all their datasets."""
    if redo:
        for spec in cells:
            (cell_dir(spec) / 'done.json').unlink(missing_ok=True)
    todo = sum(not (cell_dir(spec) / 'done.json').is_file() for spec in cells)
    earlier = len(cells) - todo
    groups: dict[tuple, list[CellSpec]] = {}
    for spec in cells:
        key = engine_group(spec)
        if key is not None:
            groups.setdefault(key, []).append(spec)
    columns = [TextColumn('[bold]{task.description}'), BarColumn(), MofNCompleteColumn(), TextColumn('elapsed'),
               TimeElapsedColumn(), TextColumn('left'), TimeRemainingColumn(), TextColumn('{task.fields[cell]}')]
    with Progress(*columns, console=console, transient=False, speed_estimate_period=7 * 24 * 3600) as progress:
        desc = f'{title}: {todo} cell(s)' + (f', {earlier} finished before' if earlier else '')
        task = progress.add_task(desc, total=todo, cell='')
        finished: dict[int, CellResult] = {}
        for spec in cells:
            if id(spec) in finished:
                continue
            key = engine_group(spec)
            members = groups[key] if key is not None else [spec]
            paths = [cell_dir(s) for s in members]
            label = f'{spec.train} -> {spec.inference} on ' + ', '.join(f'{s.dataset}:{s.split}' for s in members)
            out = run_engine_group(members, paths, env=env, settings=settings, n_boot=n_boot, seed=seed,
                                   on_start=lambda: progress.update(task, cell=f'{label}: swift infer ...'))
            for s, r in zip(members, out):
                finished[id(s)] = r
                if not r.cached:
                    progress.advance(task)
        results = [finished[id(spec)] for spec in cells]
        progress.update(task, cell='done')
    return results


# ------------------------------------------------------------------------------ reporting

def fmt_points(value: Optional[float], low: Optional[float] = None, high: Optional[float] = None) -> str:
    if value is None:
        return '-'
    return f'{value:.1f}' if low is None or high is None else f'{value:.1f} [{low:.1f}, {high:.1f}]'


def table_rows(results: Sequence[CellResult], paper_model: Optional[str]) -> list[dict]:
    from .paper import paper_value
    rows = []
    for r in results:
        paper = None
        if paper_model and r.spec.train in TRAINING_ARMS:
            paper = paper_value(paper_model, r.spec.train, r.spec.inference, r.spec.dataset)
        rows.append({'training': r.spec.train, 'inference': r.spec.inference, 'dataset': r.spec.dataset,
                     'split': r.spec.split, 'metric': r.score['primary'], 'value': r.value,
                     'ci_low': r.metric('ci_low'), 'ci_high': r.metric('ci_high'), 'n': r.metric('n'),
                     # rows with no answer to score (unparseable or unscorable), counted wrong in `value`
                     'unparseable': r.score['metrics'][r.score['primary']].get('n_unparseable'),
                     'mean_visual_tokens': r.mean_visual_tokens, 'paper': paper, 'checkpoint': r.spec.checkpoint})
    return rows


def write_csv(path: Path, rows: Sequence[dict]) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(rows: Sequence[dict], compare_paper: bool, notes: Sequence[str] = ()) -> str:
    """The paper's layout: one row per (training, inference), one column per dataset. Every cell
    says how many of its scored answers were unparseable (wrong, and a sign of a broken format
    rather than a wrong belief): `50.0 [41.2, 58.8] (3/96 unparseable)`. `notes`: how this run
    differs from the paper's (marked † beside each paper number)."""
    datasets = list(dict.fromkeys(r['dataset'] for r in rows))
    keys = list(dict.fromkeys((r['training'], r['inference']) for r in rows))
    by = {(r['training'], r['inference'], r['dataset']): r for r in rows}
    lines = ['| Training | Inference | ' + ' | '.join(datasets) + ' |', '| --- | --- |' + ' --- |' * len(datasets)]
    last_train = None
    for train, inf in keys:
        cells = []
        for d in datasets:
            r = by.get((train, inf, d))
            if r is None:
                cells.append('-')
                continue
            extra = []
            if compare_paper:
                paper = 'paper\u2020' if notes else 'paper'
                extra.append(f'{paper} {r["paper"]:.2f}' if r['paper'] is not None else f'{paper} -')
            if r.get('unparseable') is not None:
                extra.append(f'{r["unparseable"]}/{r["n"]} unparseable')
            text = fmt_points(r['value'], r['ci_low'], r['ci_high'])
            cells.append(text + (f' ({"; ".join(extra)})' if extra else ''))
        lines.append(f'| {train if train != last_train else ""} | {inf} | ' + ' | '.join(cells) + ' |')
        last_train = train
    if compare_paper and notes:
        lines += ['', '\u2020 Differs from the paper: ' + '; '.join(notes) + '.']
    return '\n'.join(lines) + '\n'


def heatmap(path: Path, rows: Sequence[dict], title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np

    datasets = list(dict.fromkeys(r['dataset'] for r in rows))
    keys = list(dict.fromkeys((r['training'], r['inference']) for r in rows))
    by = {(r['training'], r['inference'], r['dataset']): r['value'] for r in rows}
    data = np.array([[by.get((t, i, d)) if by.get((t, i, d)) is not None else np.nan for d in datasets]
                     for t, i in keys], dtype=float)
    fig, ax = plt.subplots(figsize=(max(5.0, 3.0 + 1.3 * len(datasets)), 1.2 + 0.45 * len(keys)))
    im = ax.imshow(data, cmap='viridis', vmin=0, vmax=100, aspect='auto')
    ax.set_xticks(range(len(datasets)), datasets, rotation=30, ha='right')
    ax.set_yticks(range(len(keys)), [f'train {t} / infer {i}' for t, i in keys])
    for (y, x), v in np.ndenumerate(data):
        if not math.isnan(v):
            ax.text(x, y, f'{v:.1f}', ha='center', va='center', color='white' if v < 60 else 'black', fontsize=8)
    fig.colorbar(im, ax=ax, label='accuracy (points)')
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)


def comparisons(results: Sequence[CellResult], n_boot: int = 2000, seed: int = 0) -> list[dict]:
    """The paper's claims as paired tests on the same questions, images as clusters, Holm-corrected
    over the family (the tests that have a p value: those on 0/1 metrics)."""
    from .scoring import compare_rows
    from .stats import holm
    by = {(r.spec.train, r.spec.inference, r.spec.dataset): r for r in results}
    out = []
    for dataset in dict.fromkeys(r.spec.dataset for r in results):
        for claim, a, b in COMPARISONS:
            ra, rb = by.get((*a, dataset)), by.get((*b, dataset))
            if ra is None or rb is None:
                continue
            metric = ra.score['primary']
            c = compare_rows(read_rows(rows_path(ra.path / 'score.json')), read_rows(rows_path(rb.path / 'score.json')),
                             metric, a_name=f'{a[0]}/{a[1]}', b_name=f'{b[0]}/{b[1]}', n_boot=n_boot, seed=seed)
            out.append({'dataset': dataset, 'claim': claim, 'a': c.a_name, 'b': c.b_name, 'metric': metric,
                        'n': c.n, 'images': c.n_clusters, 'a_points': 100 * c.mean_a, 'b_points': 100 * c.mean_b,
                        'diff_points': 100 * c.diff, 'diff_ci_low': 100 * c.low, 'diff_ci_high': 100 * c.high,
                        'ci_method': c.ci_method, 'table': c.table, 'test': c.test, 'p': c.p_value})
    tested = [i for i, r in enumerate(out) if r['p'] is not None]
    _, adjusted = holm([out[i]['p'] for i in tested])
    for i, adj in zip(tested, adjusted):
        out[i]['holm_p'] = adj
    for r in out:
        r.setdefault('holm_p', None)
    return out


def comparisons_markdown(rows: Sequence[dict]) -> str:
    from .stats import TESTS

    def num(x: Optional[float], fmt: str) -> str:
        return '-' if x is None or x != x else format(x, fmt)

    lines = ['| dataset | claim | A | B | n (images) | B - A (points) [95% CI] | p | Holm p |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        mark = {'mcnemar_exact': '', 'cluster_sign_flip': '*'}.get(r['test'] or '', '')
        lines.append(f'| {r["dataset"]} | {r["claim"]} | {r["a"]} | {r["b"]} | {r["n"]} ({r["images"]}) | '
                     f'{r["diff_points"]:+.1f} [{num(r["diff_ci_low"], "+.1f")}, {num(r["diff_ci_high"], "+.1f")}] | '
                     f'{num(r["p"], ".3g")}{mark} | {num(r["holm_p"], ".3g")} |')
    used = [t for t in TESTS if any(r['test'] == t for r in rows)]
    if used:
        lines.append('')
        lines.append('p: ' + '; '.join(('* ' if t == 'cluster_sign_flip' else '') + TESTS[t] for t in used)
                     + '. Holm: over the tests of this table. CI: each arm\'s Agresti-Coull interval on its '
                     'design-effect-adjusted n, combined by MOVER (accuracies); paired image bootstrap (token recall).')
    return '\n'.join(lines) + '\n'


@dataclass
class GridReport:
    results: list[CellResult]
    table_csv: Path
    table_md: Path
    heatmap_png: Path
    comparisons_csv: Optional[Path]
    comparisons_md: Optional[Path]
    markdown: str
    comparisons: list[dict]


def run_grid(config: GridConfig) -> GridReport:
    config.workdir.mkdir(parents=True, exist_ok=True)
    cells = config.cells()
    _atomic_write(config.workdir / 'grid.json', json.dumps(
        {'arms': config.arms, 'datasets': config.datasets, 'inferences': config.inferences, 'split': config.split,
         'policy_overrides': config.policy_overrides, 'extra_args': list(config.extra_args), 'mode': config.mode,
         'paper_model': config.paper_model}, indent=2) + '\n')
    results = run_cells(cells, config.cell_dir, env=config.env, settings=config.settings, redo=config.redo,
                        n_boot=config.n_boot, seed=config.seed)
    rows = table_rows(results, config.paper_model)
    w = config.workdir
    write_csv(w / 'grid.csv', rows)
    from .paper import comparison_notes
    notes = comparison_notes(config.paper_model, config.mode) if config.paper_model else []
    md = markdown_table(rows, config.paper_model is not None, notes)
    (w / 'grid.md').write_text(md)
    heatmap(w / 'grid.png', rows, f'{rows[0]["metric"]}, {config.mode} scoring')
    comps = comparisons(results, n_boot=config.n_boot, seed=config.seed)
    comp_csv = comp_md = None
    if comps:
        comp_csv, comp_md = w / 'comparisons.csv', w / 'comparisons.md'
        write_csv(comp_csv, comps)
        comp_md.write_text(comparisons_markdown(comps))
    return GridReport(results, w / 'grid.csv', w / 'grid.md', w / 'grid.png', comp_csv, comp_md, md, comps)
