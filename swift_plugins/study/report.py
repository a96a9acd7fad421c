"""The study's report: `report/index.html` (static, self-contained: figures embedded as data URIs,
no script, no server) and `report/report.md` (figures beside it in `figures/`).

Per dataset: the train x inference heatmap with 95% CIs and its table (the paper's published number
beside ours where the model is one of the paper's); accuracy against visual tokens per image for every
(training arm, inference resolution) point with CI bars; the paper's claims as paired tests (forest
plot and table); the training loss of each arm; the probe's pattern checks when the dataset is the
probe; the zero-shot sweep when run. Then the plan and the provenance (recipes, registry entries,
policy, seeds, versions, checkpoints).
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path
from typing import Optional, Sequence

from ..eval.grid import comparisons_markdown, fmt_points, markdown_table, sha256_text
from ..vocabulary import INFERENCE_MODES, TRAINING_ARMS, Env

ARM_COLORS = {'none': '#7f7f7f', 'low': '#1f77b4', 'native': '#d62728', 'mixed': '#2ca02c'}
INFERENCE_MARKERS = {'low': 'v', 'native': '^', 'mixed': 'o'}


def _plt():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def _order(values, preferred) -> list:
    seen = list(dict.fromkeys(values))
    return [v for v in preferred if v in seen] + [v for v in seen if v not in preferred]


# ------------------------------------------------------------------------------ figures

def heatmap(path: Path, rows: Sequence[dict], title: str) -> None:
    """Training arm x inference resolution, value and 95% CI in each cell."""
    import numpy as np
    plt = _plt()
    trains = _order([r['training'] for r in rows], TRAINING_ARMS)
    infs = _order([r['inference'] for r in rows], INFERENCE_MODES)
    by = {(r['training'], r['inference']): r for r in rows}
    data = np.full((len(trains), len(infs)), np.nan)
    for (t, i), r in by.items():
        if r['value'] is not None:
            data[trains.index(t), infs.index(i)] = r['value']
    fig, ax = plt.subplots(figsize=(1.9 * len(infs) + 2.2, 0.75 * len(trains) + 1.4))
    im = ax.imshow(data, cmap='viridis', vmin=0, vmax=100, aspect='auto')
    ax.set_xticks(range(len(infs)), [f'infer {i}' for i in infs])
    ax.set_yticks(range(len(trains)), [f'train {t}' for t in trains])
    for (y, x), v in np.ndenumerate(data):
        r = by.get((trains[y], infs[x]))
        if r is None or math.isnan(v):
            continue
        ci = '' if r['ci_low'] is None else f'\n[{r["ci_low"]:.1f}, {r["ci_high"]:.1f}]'
        ax.text(x, y, f'{v:.1f}{ci}', ha='center', va='center', fontsize=8, color='white' if v < 60 else 'black')
    fig.colorbar(im, ax=ax, label='points (95% CI)')
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


def tokens_plot(path: Path, rows: Sequence[dict], title: str) -> bool:
    """Accuracy against measured visual tokens per image, one point per (training, inference)."""
    plt = _plt()
    pts = [r for r in rows if r['value'] is not None and r['mean_visual_tokens']]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = [r['mean_visual_tokens'] for r in pts]
    log = max(xs) / max(min(xs), 1e-9) > 8
    trains = _order([r['training'] for r in pts], TRAINING_ARMS)
    for r in pts:
        # Arms evaluated at one resolution share its token count: spread them a little sideways.
        dodge = 1 + 0.025 * (trains.index(r['training']) - (len(trains) - 1) / 2)
        x = r['mean_visual_tokens'] * dodge
        low = r['value'] - (r['ci_low'] if r['ci_low'] is not None else r['value'])
        high = (r['ci_high'] if r['ci_high'] is not None else r['value']) - r['value']
        ax.errorbar([x], [r['value']], yerr=[[low], [high]], capsize=3, linestyle='none',
                    marker=INFERENCE_MARKERS.get(r['inference'], 's'), color=ARM_COLORS.get(r['training'], 'black'),
                    markersize=7)
    if log:
        ax.set_xscale('log')
    ax.set_ylim(-3, 103)
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=ARM_COLORS.get(t, 'black'), marker='s', linestyle='none', label=f'train {t}')
               for t in _order([r['training'] for r in pts], TRAINING_ARMS)]
    handles += [Line2D([], [], color='black', marker=INFERENCE_MARKERS.get(i, 's'), linestyle='none',
                       label=f'infer {i}') for i in _order([r['inference'] for r in pts], INFERENCE_MODES)]
    ax.legend(handles=handles, fontsize=7, loc='best', ncol=2)
    ax.set_xlabel('visual tokens per test image (measured mean)')
    ax.set_ylabel('points (95% CI)')
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return True


def forest_plot(path: Path, comps: Sequence[dict], title: str) -> bool:
    """Each claim's paired difference B - A with its 95% CI."""
    plt = _plt()
    if not comps:
        return False
    fig, ax = plt.subplots(figsize=(7.0, 0.45 * len(comps) + 1.2))
    for y, c in enumerate(comps):
        color = 'black' if c['holm_p'] is None or c['holm_p'] >= 0.05 else '#d62728'
        ax.errorbar([c['diff_points']], [y], xerr=[[c['diff_points'] - c['diff_ci_low']],
                                                   [c['diff_ci_high'] - c['diff_points']]],
                    fmt='o', color=color, capsize=3)
    ax.axvline(0, color='grey', linewidth=0.8)
    ax.set_yticks(range(len(comps)), [f'{c["b"]} vs {c["a"]}' for c in comps], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('difference in points, B - A (paired 95% CI; red: Holm p < 0.05)')
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return True


def loss_plot(path: Path, arms, title: str) -> bool:
    plt = _plt()
    curves = [a for a in arms if a.losses]
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for a in curves:
        ax.plot(range(1, len(a.losses) + 1), a.losses, marker='.', color=ARM_COLORS.get(a.arm), label=f'train {a.arm}')
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel('logging step')
    ax.set_ylabel('training loss')
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return True


# ------------------------------------------------------------------------------ documents

class Doc:
    """Blocks rendered to both Markdown and HTML: headings, paragraphs, Markdown tables, figures."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(('h', level, text))

    def p(self, text: str):
        self.blocks.append(('p', text))

    def table(self, md: str):
        if md.strip():
            self.blocks.append(('table', md))

    def bullets(self, items: Sequence[str]):
        if items:
            self.blocks.append(('ul', list(items)))

    def figure(self, path: Path, caption: str):
        self.blocks.append(('img', path, caption))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == 'h':
                out.append('#' * b[1] + ' ' + b[2])
            elif b[0] == 'p':
                out.append(b[1])
            elif b[0] == 'table':
                out.append(b[1].rstrip())
            elif b[0] == 'ul':
                out.append('\n'.join(f'- {i}' for i in b[1]))
            elif b[0] == 'img':
                out.append(f'![{b[2]}]({b[1].relative_to(self.folder).as_posix()})\n\n*{b[2]}*')
        return '\n\n'.join(out) + '\n'

    def html(self, title: str) -> str:
        body = []
        for b in self.blocks:
            if b[0] == 'h':
                body.append(f'<h{b[1]}>{inline(b[2])}</h{b[1]}>')
            elif b[0] == 'p':
                body.append(f'<p>{inline(b[1])}</p>')
            elif b[0] == 'table':
                body.append(table_html(b[1]))
            elif b[0] == 'ul':
                body.append('<ul>' + ''.join(f'<li>{inline(i)}</li>' for i in b[1]) + '</ul>')
            elif b[0] == 'img':
                data = base64.b64encode(b[1].read_bytes()).decode()
                body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                            f'<figcaption>{inline(b[2])}</figcaption></figure>')
        return HTML_TEMPLATE.format(title=html.escape(title), body='\n'.join(body))


def inline(text: str) -> str:
    """Markdown's inline bold and code spans, everything else escaped."""
    out = html.escape(text)
    out = re.sub(r'\*\*(.+?)\*\*', r'<strong>\1</strong>', out)
    return re.sub(r'`(.+?)`', r'<code>\1</code>', out)


def table_html(md: str) -> str:
    """A Markdown block of pipe tables, text lines and `- ` items, in order, as HTML."""
    out, table, items = [], [], []

    def flush():
        if table:
            rows = [r for r in table if not all(re.fullmatch(r':?-{3,}:?', c) for c in r)]
            head, *body = rows
            out.append('<table><thead><tr>' + ''.join(f'<th>{inline(c)}</th>' for c in head) + '</tr></thead><tbody>'
                       + ''.join('<tr>' + ''.join(f'<td>{inline(c)}</td>' for c in r) + '</tr>' for r in body)
                       + '</tbody></table>')
            table.clear()
        if items:
            out.append('<ul>' + ''.join(f'<li>{inline(i)}</li>' for i in items) + '</ul>')
            items.clear()
    for line in md.strip().splitlines():
        text = line.strip()
        if text.startswith('|'):
            if items:
                flush()
            table.append([c.strip() for c in text.strip('|').split('|')])
            continue
        if table:
            flush()
        if text.startswith('- '):
            items.append(text[2:])
        elif text:
            flush()
            out.append(f'<p>{inline(text)}</p>')
    flush()
    return '\n'.join(out)


HTML_TEMPLATE = '''<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }}
h1 {{ font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }}
h2 {{ font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #eee; }}
h3 {{ font-size: 1.1em; margin-top: 1.5em; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: .88em; }}
th, td {{ border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
tbody tr:nth-child(even) {{ background: #fafafa; }}
figure {{ margin: 1em 0; }}
figure img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ font-size: .85em; color: #555; }}
code {{ background: #f4f4f4; padding: 0 .2em; font-size: .9em; word-break: break-all; }}
</style>
</head>
<body>
{body}
</body>
</html>
'''


# ------------------------------------------------------------------------------ the report

def write_report(result) -> tuple[Path, Path]:
    c = result.config
    folder = c.workdir / 'report'
    figures = folder / 'figures'
    figures.mkdir(parents=True, exist_ok=True)
    for stale in figures.glob('*.png'):
        stale.unlink()
    doc = Doc(folder)
    title = c.title or f'medres study: {c.model.model}'
    doc.h(1, title)
    datasets = list(dict.fromkeys(r['dataset'] for r in result.rows))
    doc.p(f'Model **{c.model.model}** (recipes `{c.model.recipe_key}-{c.tuning}-<resolution>`); datasets '
          f'{", ".join(f"`{d}`" for d in datasets)}; training arms {", ".join(c.arms)}; inference '
          f'{", ".join(c.inferences)}; {c.mode} scoring; every value in points with its 95% image-clustered bootstrap '
          f'CI ({c.n_boot:,} resamples). Started {result.started}; stages ' +
          ', '.join(f'{k} {v / 60:.1f} min' for k, v in result.seconds.items() if k != 'report') + '.')
    if result.paper:
        doc.p(f'The paper reports this model as **{result.paper}** (arXiv 2510.18304): its published numbers stand '
              'beside ours as "(paper X)".')
    else:
        doc.p('The paper has no numbers for this model, so none are shown beside ours.')

    for dataset in datasets:
        rows = [r for r in result.rows if r['dataset'] == dataset]
        comps = [x for x in result.comparisons if x['dataset'] == dataset]
        doc.h(2, f'{dataset}: {rows[0]["metric"]} on {rows[0]["split"]} (n = {rows[0]["n"]} images)')
        heat = figures / f'{dataset}-heatmap.png'
        heatmap(heat, rows, f'{dataset}: training x inference resolution ({rows[0]["metric"]})')
        doc.figure(heat, f'{dataset}: accuracy of each training arm (rows) at each inference resolution (columns), '
                         '95% CI below each value.')
        doc.table(markdown_table(rows, result.paper is not None))
        tok = figures / f'{dataset}-tokens.png'
        if tokens_plot(tok, rows, f'{dataset}: what resolution costs and buys'):
            doc.figure(tok, f'{dataset}: accuracy against visual tokens per test image for every (training arm, '
                            'inference resolution); colour: training arm, marker: inference resolution; bars: 95% CI.')
        doc.table(tokens_table(rows))
        if comps:
            doc.h(3, "The paper's claims as paired tests")
            forest = figures / f'{dataset}-claims.png'
            forest_plot(forest, comps, f'{dataset}: paired differences')
            doc.figure(forest, f'{dataset}: each claim as B - A on the same questions, image-clustered 95% CI; '
                               'McNemar exact p, Holm-adjusted over every claim of the study.')
            doc.table(comparisons_markdown(comps))
        arms = [a for a in result.arms if a.dataset == dataset]
        loss = figures / f'{dataset}-loss.png'
        if loss_plot(loss, arms, f'{dataset}: training loss per arm'):
            doc.figure(loss, f'{dataset}: training loss of each arm (ms-swift\'s logging steps).')
        if result.probe is not None and dataset == 'probe':
            probe_blocks(doc, result.probe)
        for s in result.sweeps:
            if s.dataset == dataset:
                doc.h(3, 'Zero-shot inference-resolution sweep (the base model)')
                png = figures / f'{dataset}-sweep.png'
                png.write_bytes((c.workdir / 'sweep' / dataset / 'sweep.png').read_bytes())
                doc.figure(png, f'{dataset}: the untrained base model at several low budgets and at native resolution.')
                doc.table(s.markdown)

    doc.h(2, 'Plan: what the training cost')
    doc.table(result.plan_md)
    doc.h(2, 'Provenance')
    doc.bullets(provenance(result))
    doc.table(checkpoints_table(result))
    md_path, html_path = folder / 'report.md', folder / 'index.html'
    md_path.write_text(doc.markdown())
    html_path.write_text(doc.html(title))
    return html_path, md_path


def tokens_table(rows: Sequence[dict]) -> str:
    lines = ['| training | inference | visual tokens / image | points [95% CI] |', '| --- | --- | --- | --- |']
    for r in rows:
        tok = '-' if r['mean_visual_tokens'] is None else f'{r["mean_visual_tokens"]:,.1f}'
        lines.append(f'| {r["training"]} | {r["inference"]} | {tok} | {fmt_points(r["value"], r["ci_low"], r["ci_high"])} |')
    return '\n'.join(lines) + '\n'


def probe_blocks(doc: Doc, probe: dict) -> None:
    from ..probe.pattern import PatternCheck, breakdown_markdown, checks_markdown
    doc.h(3, "The paper's pattern on the probe")
    if probe.get('skipped'):
        doc.p(f'Not stated: {probe["skipped"]}.')
        return
    checks = [PatternCheck(**{**c, 'ci': tuple(c['ci']) if c.get('ci') else None}) for c in probe['checks']]
    holds = all(c.holds for c in checks)
    doc.p('Every claim holds.' if holds else 'Not every claim holds: ' +
          ', '.join(c.claim for c in checks if not c.holds) + '.')
    doc.table(checks_markdown(checks))
    doc.p('Which cue each model reads: accuracy on the test images whose stain hue names their class, and on those '
          'whose hue names another class (a model reading the hue scores 0 there, one reading the stripes 100).')
    doc.table(breakdown_markdown(probe['breakdown']))


def provenance(result) -> list[str]:
    from ..data.registry import get_entry
    c = result.config
    items = []
    if c.command_line:
        items.append(f'command: `{c.command_line}`')
    items.append(f'study folder: `{c.workdir}`; training: {c.launcher_text()}')
    recipes = sorted({c.recipe(a) for a in c.trained_arms})
    recipes += sorted({Path(r.spec.recipe) for r in result.cells})
    items += [f'recipe `{p.relative_to(p.parents[2]) if len(p.parents) > 2 else p}` sha256 `{sha256_text(p)[:16]}`'
              for p in dict.fromkeys(recipes)]
    for name in dict.fromkeys(r['dataset'] for r in result.rows):
        entry = get_entry(name, c.settings.registry_dirs)
        items.append(f'registry entry `{entry.registered_name}` fingerprint `{entry.fingerprint()[:16]}` '
                     f'(train split `{c.train_split}`, evaluated on `{c.eval_split}`)')
    policies = sorted({(r.spec.inference, ', '.join(f'{k}={v}' for k, v in sorted(r.spec.policy.items())))
                       for r in result.cells})
    items += [f'inference policy {inf}: `{p}`' for inf, p in policies]
    if c.policy_overrides:
        items.append('policy over the recipes\' (training and inference): `' +
                     ', '.join(f'{k}={v}' for k, v in sorted(c.policy_overrides.items())) + '`')
    if c.swift_args or c.train_args:
        items.append(f'swift sft flags added to the recipes: `{" ".join([*c.train_args, *c.swift_args])}`')
    if c.infer_args:
        items.append(f'swift infer flags added: `{" ".join(c.infer_args)}`')
    items.append(f'seeds: the recipes\' `seed`/`data_seed` (unless overridden above), mixed draw '
                 f'`{", ".join(sorted({r.spec.policy.get(Env.MIX_SEED, "-") for r in result.cells}))}`'
                 f'; bootstrap seed {c.bootstrap_seed}' + (f'; probe replicate seed {c.probe.seed}' if c.probe else ''))
    items.append('versions: ' + ', '.join(f'{k} {v}' for k, v in versions().items()))
    return items


def checkpoints_table(result) -> str:
    lines = ['| dataset | arm | checkpoint | trained in | final loss |', '| --- | --- | --- | --- | --- |']
    for a in result.arms:
        loss: Optional[float] = a.losses[-1] if a.losses else None
        lines.append(f'| {a.dataset} | {a.arm} | `{a.checkpoint}` | {a.seconds / 60:.1f} min'
                     f'{" (earlier run)" if a.cached else ""} | {"-" if loss is None else f"{loss:.4f}"} |')
    return '\n'.join(lines) + '\n'


def versions() -> dict[str, str]:
    """Versions of the packages a study's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ('medres', 'ms-swift', 'transformers', 'torch', 'datasets', 'peft'):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = '-'
    return out
