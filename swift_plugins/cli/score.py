"""`medres score`: score `swift infer` predictions of one registry dataset, with 95% CIs."""
from __future__ import annotations

import json
from pathlib import Path

from .common import add_bootstrap_args

NAME = 'score'


def register(sub) -> None:
    sc = sub.add_parser(NAME, help='score swift infer predictions of one dataset, with 95%% CIs')
    sc.add_argument('--dataset', required=True, help='registry name, e.g. vqa-rad or medres/vqa-rad')
    sc.add_argument('--predictions', required=True, help='`swift infer --result_path` jsonl')
    sc.add_argument('--compat', action='store_true',
                    help="the paper's substring rules (to compare with published numbers), not strict parsing")
    sc.add_argument('--allow-partial', action='store_true',
                    help='score a file that lacks some rows of its split(s) (a killed run, skipped bad rows, a #n '
                         'sample) instead of refusing it; every table then says n of N')
    sc.add_argument('--json', action='store_true', help='print the summary as JSON instead of a table')
    sc.add_argument('--out', metavar='FILE',
                    help='write the summary JSON here, and per-row scores beside it (x.json -> x.rows.jsonl)')
    add_bootstrap_args(sc)
    sc.set_defaults(run=run)


def run(args) -> int:
    from rich import box
    from rich.table import Table

    from ..data.registry import get_entry
    from ..errors import PredictionsError
    from ..eval.predictions import coverage, read_predictions
    from ..eval.scoring import rows_path, score_predictions, write_rows
    from .common import console, fmt_points

    entry = get_entry(args.dataset, args.settings.registry_dirs)
    preds = read_predictions(args.predictions, entry.name)
    cov = coverage(preds, entry)
    if cov.missing and not args.allow_partial:
        raise PredictionsError(f'{args.predictions}: {cov.describe()} of {entry.registered_name} '
                               f'({cov.missing_text()}); a score over part of a split is not the split\'s score: '
                               f'predict the missing rows, or pass --allow-partial to score the {cov.n:,} present')
    score, rows = score_predictions(entry, preds, 'compat' if args.compat else 'strict',
                                    n_boot=args.n_boot, seed=args.bootstrap_seed)
    report = score.to_dict() | {'predictions': str(args.predictions),
                                'coverage': {'rows': cov.n, 'of': cov.total, 'complete': cov.complete,
                                             'missing': {s: len(r) for s, r in cov.missing.items()}}}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + '\n')
        write_rows(rows_path(out), rows)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    partial = '' if cov.complete else ' (PARTIAL)'
    table = Table(title=f'{entry.registered_name} ({score.mode}): {args.predictions}; {cov.describe()}{partial}',
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f'points over {cov.describe()}{partial}; {report["ci_method"]}; * the entry\'s metric')
    for col in ('metric', 'value', '95% CI', 'n', 'clusters', 'unparseable', 'ambiguous'):
        table.add_column(col, justify='left' if col == 'metric' else 'right', no_wrap=True)
    for m in score.metrics.values():
        ci = '-' if m.ci_low is None else f'{m.ci_low:.1f}-{m.ci_high:.1f}'
        table.add_row(m.name + ('*' if m.name == score.primary else ''), fmt_points(m.value), ci, str(m.n),
                      str(m.n_clusters), str(m.n_unparseable), str(m.n_ambiguous))
    console.print(table)
    warnings = list(score.warnings)
    if cov.missing:
        warnings.insert(0, f'partial: {cov.describe()} ({cov.missing_text()}); the values are over the present rows only')
    if cov.unknown_splits:
        warnings.insert(0, f'split size unknown for {cov.unknown_splits} (rows written before medres recorded it and no '
                           f'declared rows): coverage not checked')
    for w in warnings:
        console.print(f'[yellow]warning:[/yellow] {w}', highlight=False, soft_wrap=True)
    if args.out:
        console.print(f'wrote {args.out} and {rows_path(args.out)}', highlight=False)
    return 0
