"""`medres grid`: training resolution x inference resolution x dataset, as the paper's tables."""
from __future__ import annotations

from pathlib import Path

from ..vocabulary import INFERENCE_MODES
from .common import add_bootstrap_args, add_policy_args, model_ref

NAME = 'grid'


def register(sub) -> None:
    g = sub.add_parser(NAME, help='train x inference resolution grid: swift infer per cell, scores, tables, '
                                  'paired tests', usage='medres grid --arm LABEL=CKPT ... --dataset NAME ... '
                                                        '[options] [-- swift infer flags]')
    g.add_argument('--arm', action='append', required=True, metavar='LABEL=CHECKPOINT',
                   help='training arm: none=<base model>, low=..., native=..., mixed=... (repeatable)')
    g.add_argument('--dataset', action='append', required=True, metavar='NAME[:SPLIT]',
                   help='registry dataset (repeatable)')
    g.add_argument('--inference', nargs='+', default=list(INFERENCE_MODES), choices=INFERENCE_MODES,
                   help='inference resolutions (default: all three)')
    g.add_argument('--split', default='test', help='split for datasets given without one')
    g.add_argument('--workdir', default='medres-grid', help='cells, tables and plots go here; rerun to resume')
    g.add_argument('--compat', action='store_true', help="score with the paper's substring rules")
    g.add_argument('--compare-paper', nargs='?', const='auto', metavar='MODEL',
                   help="put the paper's numbers beside (model name, or taken from --arm none=<hub id>)")
    g.add_argument('--redo', action='store_true', help='recompute finished cells too')
    g.add_argument('--infer-backend', choices=('transformers', 'vllm'),
                   help="swift infer's backend (default: the recipe's, transformers); vllm starts one engine per "
                        '(arm, inference resolution) for all datasets')
    add_bootstrap_args(g)
    add_policy_args(g)
    g.set_defaults(run=run, swift_args=[])


def arms(specs: list[str]) -> dict[str, str]:
    from ..errors import UsageError
    out = {}
    for spec in specs:
        label, sep, ckpt = spec.partition('=')
        if not sep or not label or not ckpt:
            raise UsageError(f'--arm expects LABEL=CHECKPOINT (e.g. native=output/run/checkpoint-100), got {spec!r}')
        out[label] = model_ref(ckpt)
    return out


def backend_args(args) -> tuple[str, ...]:
    """--infer-backend as the swift infer flag (the same cell key as `-- --infer_backend X`)."""
    return ('--infer_backend', args.infer_backend) if args.infer_backend else ()


def run(args) -> int:
    from rich.markdown import Markdown

    from ..errors import UsageError
    from ..eval.grid import GridConfig, comparisons_markdown, run_grid
    from ..eval.paper import paper_model
    from .common import console, policy_overrides

    arm_map = arms(args.arm)
    model = None
    if args.compare_paper:
        model = paper_model(args.compare_paper) if args.compare_paper != 'auto' else paper_model(arm_map.get('none', ''))
        if model is None:
            raise UsageError('--compare-paper: name the paper model (Qwen2-VL-2B, InternVL2.5-2B, LLaVA-OneVision-2B, '
                             'Qwen2-VL-7B) or give the base model as --arm none=<hub id>')
    config = GridConfig(Path(args.workdir).resolve(), arm_map, args.dataset, args.inference, args.split,
                        policy_overrides(args), backend_args(args) + tuple(args.swift_args),
                        'compat' if args.compat else 'strict',
                        model, args.n_boot, args.bootstrap_seed, args.redo, settings=args.settings, env=args.env)
    report = run_grid(config)
    console.print(Markdown(report.markdown))
    if report.comparisons:
        console.print(Markdown(comparisons_markdown(report.comparisons)))
    files = [report.table_csv, report.table_md, report.heatmap_png, report.comparisons_csv, report.comparisons_md]
    console.print('wrote: ' + ', '.join(str(f) for f in files if f), highlight=False, soft_wrap=True)
    console.print(f'cells (predictions, visual tokens, scores, logs): {config.workdir / "cells"}', highlight=False)
    return 0
