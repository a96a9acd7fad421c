"""`medres sweep`: one model over several inference resolutions (the paper's section 3.5).

"If the model's training resolution details are unknown, users should empirically evaluate
different inference resolutions": each setting is a grid cell (low at a pixel budget, or native)
on a held-out split, scored with its CI and its measured visual tokens; the best one is
recommended, with the cheapest setting that is statistically indistinguishable from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..data.registry import get_entry
from ..data.spec import DatasetSpec
from ..settings import Settings
from ..train.recipes import RECIPES_DIR
from ..vocabulary import Env
from .grid import CellResult, CellSpec, _atomic_write, effective_policy, make_spec, run_cells, single_split, write_csv

# Low budgets in Qwen2-VL tokens 256, 512, 1280 (the paper's low), 2560; then native.
DEFAULT_BUDGETS = (256 * 784, 512 * 784, 1280 * 784, 2560 * 784)


@dataclass
class SweepRow:
    setting: str
    budget: Optional[int]
    accuracy: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    mean_visual_tokens: Optional[float]


def sweep_cells(model: str, dataset: str, budgets: Sequence[int], extra_args: Sequence[str],
                mode: str = 'strict', *, settings: Settings = Settings(),
                env: Mapping[str, str] = {}) -> list[CellSpec]:
    spec = DatasetSpec.parse(dataset)
    entry = get_entry(spec.name, settings.registry_dirs)
    split = single_split(spec, entry, 'validation' if 'validation' in entry.splits else 'test')
    cells = []
    for budget in [*budgets, None]:
        resolution = 'native' if budget is None else 'low'
        recipe = RECIPES_DIR / 'infer' / f'{resolution}.yaml'
        overrides = {Env.RESOLUTION: resolution, **({Env.LOW_PIXELS: str(budget)} if budget else {})}
        label = 'native' if budget is None else f'low-{budget}'
        cells.append(make_spec('base', model, entry, split, label, recipe, effective_policy(recipe, env, overrides),
                               extra_args, mode))
    return cells


def summarize(results: Sequence[CellResult]) -> list[SweepRow]:
    rows = []
    for r in results:
        budget = int(r.spec.policy[Env.LOW_PIXELS]) if r.spec.inference.startswith('low') else None
        rows.append(SweepRow(r.spec.inference, budget, r.value, r.metric('ci_low'), r.metric('ci_high'),
                             r.metric('n'), r.mean_visual_tokens))
    return rows


def recommend(rows: Sequence[SweepRow]) -> tuple[SweepRow, SweepRow]:
    """(best accuracy, cheapest setting whose CI reaches the best's point estimate)."""
    scored = [r for r in rows if r.accuracy is not None]
    if not scored:
        raise ValueError('no setting produced a score')
    best = max(scored, key=lambda r: (r.accuracy, -(r.mean_visual_tokens or 0)))
    close = [r for r in scored if r.ci_high is not None and r.ci_high >= best.accuracy]
    cheapest = min(close or [best], key=lambda r: r.mean_visual_tokens or float('inf'))
    return best, cheapest


def plot(path: Path, rows: Sequence[SweepRow], title: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.accuracy is not None and r.mean_visual_tokens]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r.mean_visual_tokens for r in pts]
    ys = [r.accuracy for r in pts]
    err = [[r.accuracy - r.ci_low for r in pts], [r.ci_high - r.accuracy for r in pts]]
    ax.errorbar(xs, ys, yerr=err, fmt='o-', capsize=3)
    for r in pts:
        ax.annotate(r.setting, (r.mean_visual_tokens, r.accuracy), textcoords='offset points', xytext=(4, 4),
                    fontsize=8)
    ax.set_xscale('log')
    ax.set_xlabel('mean visual tokens per image (measured)')
    ax.set_ylabel('accuracy (points, 95% CI)')
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)


def markdown(rows: Sequence[SweepRow], best: SweepRow, cheapest: SweepRow) -> str:
    lines = ['| setting | low budget (px) | visual tokens / image | accuracy [95% CI] | n |',
             '| --- | --- | --- | --- | --- |']
    for r in rows:
        acc = '-' if r.accuracy is None else f'{r.accuracy:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]'
        tok = '-' if r.mean_visual_tokens is None else f'{r.mean_visual_tokens:.0f}'
        lines.append(f'| {r.setting} | {r.budget or "-"} | {tok} | {acc} | {r.n} |')
    lines.append('')
    lines.append(f'Recommended: **{best.setting}** (highest accuracy, {best.accuracy:.1f}).')
    if cheapest.setting != best.setting:
        lines.append(f'Cheapest within its CI: **{cheapest.setting}** ({cheapest.mean_visual_tokens:.0f} tokens '
                     f'per image vs {best.mean_visual_tokens:.0f}).')
    return '\n'.join(lines) + '\n'


def run_sweep(model: str, dataset: str, workdir: Path, budgets: Sequence[int] = DEFAULT_BUDGETS,
              extra_args: Sequence[str] = (), mode: str = 'strict', redo: bool = False,
              n_boot: int = 2000, seed: int = 0, *, settings: Settings = Settings(),
              env: Mapping[str, str] = {}) -> tuple[list[SweepRow], SweepRow, SweepRow, dict[str, Path]]:
    workdir.mkdir(parents=True, exist_ok=True)
    cells = sweep_cells(model, dataset, budgets, extra_args, mode, settings=settings, env=env)
    results = run_cells(cells, lambda s: workdir / 'cells' / s.train / s.dataset / s.split / s.inference,
                        env=env, settings=settings, redo=redo, n_boot=n_boot, seed=seed, title='sweep')
    rows = summarize(results)
    best, cheapest = recommend(rows)
    files = {'csv': workdir / 'sweep.csv', 'md': workdir / 'sweep.md', 'png': workdir / 'sweep.png'}
    write_csv(files['csv'], [vars(r) for r in rows])
    _atomic_write(files['md'], markdown(rows, best, cheapest))
    plot(files['png'], rows, f'{model}: {cells[0].dataset}:{cells[0].split}')
    return rows, best, cheapest, files
