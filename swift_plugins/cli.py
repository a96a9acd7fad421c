"""`medres`: what stock ms-swift lacks. Each subcommand delegates to the module that does the work."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .registry import REGISTRY_ENV, RegistryError, load_registry

console = Console()


def cmd_datasets(args) -> int:
    entries = load_registry()
    if args.json:
        print(json.dumps([e.model_dump(mode='json') | {'registered_as': e.registered_name, 'file': e.path}
                          for e in entries.values()], indent=2))
        return 0
    table = Table(title=f'medres dataset registry ({len(entries)} entries)')
    for col in ('name', 'modality', 'task'):
        table.add_column(col, no_wrap=True)
    for col in ('splits (rows)', 'native size', 'source', 'license'):
        table.add_column(col, overflow='fold')
    for e in entries.values():
        splits = ', '.join(f'{s} ({v.rows:,})' if v.rows is not None else s for s, v in e.splits.items())
        size = f'{e.native_size.width}x{e.native_size.height}'
        table.add_row(e.registered_name, e.modality, e.task.kind, splits, size, e.source_summary, e.license)
    console.print(table)
    return 0


def cmd_plugin_path(args) -> int:
    from .swift_run import PLUGIN_PATH
    print(PLUGIN_PATH)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    run_demo(Path(args.workdir), max_steps=args.max_steps)
    return 0


def _policies(args):
    """The policies `medres tokens` reports: the one asked for, or native / low / mixed side by side."""
    from dataclasses import replace

    from .resolution import ResolutionPolicy
    base = ResolutionPolicy.from_env() or ResolutionPolicy(mode='native')
    overrides = {k: v for k, v in {
        'low_pixels': args.low_pixels, 'low_scale': args.low_scale, 'native_max_pixels': args.native_max_pixels,
        'mix_ratio': args.mix_ratio, 'seed': args.seed, 'balance': args.balance,
        'upsample_from_low': args.upsample_from_low or None}.items() if v is not None}
    base = replace(base, **overrides)
    modes = [args.resolution] if args.resolution else ['native', 'low', 'mixed']
    return [replace(base, mode=m) for m in modes]


def cmd_tokens(args) -> int:
    from .families import get_family
    from .tokens import fmt_ratio, humanize, jsonl_split_sizes, load_registry_sizes, policy_costs

    family = get_family(args.family)
    if not (args.dataset or args.jsonl):
        raise SystemExit('medres tokens: give --dataset NAME[:SPLIT] and/or --jsonl FILE')
    splits = load_registry_sizes(args.dataset) + [jsonl_split_sizes(Path(p)) for p in args.jsonl]
    rows = [(policy, c) for policy in _policies(args) for c in policy_costs(splits, family, policy)]
    if args.json:
        print(json.dumps([{'policy': p.describe(), 'mode': p.mode, 'family': family.name, **c.as_dict()}
                          for p, c in rows], indent=2))
        return 0
    table = Table(title=f'visual tokens per image, {family.name}')
    for col in ('dataset:split', 'policy', 'images', 'low', 'mean', 'p95', 'max', 'tokens/epoch', 'vs native'):
        table.add_column(col, justify='left' if col in ('dataset:split', 'policy') else 'right')
    for p, c in rows:
        table.add_row(f'{c.dataset}:{c.split}', p.mode, f'{c.images:,}', f'{c.low_images:,}', f'{c.mean_tokens:,.0f}',
                      f'{c.p95_tokens:,.0f}', f'{c.max_tokens:,}', humanize(c.total_tokens), fmt_ratio(c.cost_vs_native))
    console.print(table)
    console.print('policy: ' + '; '.join(sorted({p.describe() for p, _ in rows})), highlight=False)
    return 0


# --- medres score -------------------------------------------------------------------------------

def _fmt(x) -> str:
    return '-' if x is None else f'{x:.1f}'


def cmd_score(args) -> int:
    from rich import box

    from .predictions import PredictionsError, read_predictions
    from .registry import get_entry
    from .scoring import ScoreError, rows_path, score_predictions, write_rows

    entry = get_entry(args.dataset)
    try:
        preds = read_predictions(args.predictions, entry.name)
        score, rows = score_predictions(entry, preds, 'compat' if args.compat else 'strict',
                                        n_boot=args.n_boot, seed=args.seed)
    except (PredictionsError, ScoreError) as e:
        console.print(f'[red]score error:[/red] {e}', highlight=False, soft_wrap=True)
        return 2
    report = score.to_dict() | {'predictions': str(args.predictions)}
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + '\n')
        write_rows(rows_path(out), rows)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    table = Table(title=f'{entry.registered_name} ({score.mode}): {args.predictions}',
                  box=box.SIMPLE_HEAD, pad_edge=False,
                  caption=f'points; {report["ci_method"]}; * the entry\'s metric')
    for col in ('metric', 'value', '95% CI', 'n', 'clusters', 'unparseable', 'ambiguous'):
        table.add_column(col, justify='left' if col == 'metric' else 'right', no_wrap=True)
    for m in score.metrics.values():
        ci = '-' if m.ci_low is None else f'{m.ci_low:.1f}-{m.ci_high:.1f}'
        table.add_row(m.name + ('*' if m.name == score.primary else ''), _fmt(m.value), ci, str(m.n),
                      str(m.n_clusters), str(m.n_unparseable), str(m.n_ambiguous))
    console.print(table)
    for w in score.warnings:
        console.print(f'[yellow]warning:[/yellow] {w}', highlight=False, soft_wrap=True)
    if args.out:
        console.print(f'wrote {args.out} and {rows_path(args.out)}', highlight=False)
    return 0


def add_score_parser(sub) -> None:
    sc = sub.add_parser('score', help='score swift infer predictions of one dataset, with 95%% CIs')
    sc.add_argument('--dataset', required=True, help='registry name, e.g. vqa-rad or medres/vqa-rad')
    sc.add_argument('--predictions', required=True, help='`swift infer --result_path` jsonl')
    sc.add_argument('--compat', action='store_true',
                    help="the paper's substring rules (to compare with published numbers), not strict parsing")
    sc.add_argument('--json', action='store_true', help='print the summary as JSON instead of a table')
    sc.add_argument('--out', metavar='FILE',
                    help='write the summary JSON here, and per-row scores beside it (x.json -> x.rows.jsonl)')
    sc.add_argument('--seed', type=int, default=0, help='bootstrap seed')
    sc.add_argument('--n-boot', type=int, default=2000, help='bootstrap resamples')
    sc.set_defaults(func=cmd_score)


def cmd_recipes(args) -> int:
    from .recipes import build
    stale = build(check=args.check)
    if args.check:
        for p in stale:
            console.print(f'out of date: {p}', highlight=False)
        return 1 if stale else 0
    console.print(f'wrote the recipes ({len(stale)} changed)', highlight=False)
    return 0


def cmd_train(args) -> int:
    from .launch import LaunchError, batch_plan, launch_command, launch_env, run
    try:
        plan = batch_plan(args.micro_batch, args.nproc_per_node, args.nnodes, args.global_batch)
        env = launch_env(plan, node_rank=args.node_rank, master_addr=args.master_addr, master_port=args.master_port)
        cmd = launch_command(Path(args.recipe), plan, zero3=args.zero3, extra=args.swift_args)
        return run(Path(args.recipe), plan, env, cmd, args.dry_run)
    except LaunchError as e:
        console.print(f'[red]medres train:[/red] {e}', highlight=False, soft_wrap=True)
        return 2


def _policy_overrides(args) -> dict[str, str]:
    names = {'low_pixels': 'MEDRES_LOW_PIXELS', 'low_scale': 'MEDRES_LOW_SCALE',
             'native_max_pixels': 'MEDRES_NATIVE_MAX_PIXELS', 'mix_seed': 'MEDRES_MIX_SEED',
             'filter': 'MEDRES_FILTER'}
    return {env: str(getattr(args, a)) for a, env in names.items() if getattr(args, a, None) is not None}


def _arms(specs: list[str]) -> dict[str, str]:
    arms = {}
    for spec in specs:
        label, sep, ckpt = spec.partition('=')
        if not sep or not label or not ckpt:
            raise SystemExit(f'--arm expects LABEL=CHECKPOINT (e.g. native=output/run/checkpoint-100), got {spec!r}')
        arms[label] = str(Path(ckpt).resolve()) if Path(ckpt).exists() else ckpt
    return arms


def cmd_grid(args) -> int:
    from rich.markdown import Markdown

    from .grid import GridConfig, GridError, comparisons_markdown, run_grid
    from .paper import paper_model

    arms = _arms(args.arm)
    model = None
    if args.compare_paper:
        model = paper_model(args.compare_paper) if args.compare_paper != 'auto' else paper_model(arms.get('none', ''))
        if model is None:
            raise SystemExit('--compare-paper: name the paper model (Qwen2-VL-2B, InternVL2.5-2B, LLaVA-OneVision-2B, '
                             'Qwen2-VL-7B) or give the base model as --arm none=<hub id>')
    config = GridConfig(Path(args.workdir).resolve(), arms, args.dataset, args.inference, args.split,
                        _policy_overrides(args), tuple(args.swift_args), 'compat' if args.compat else 'strict',
                        model, args.n_boot, args.seed, args.redo)
    try:
        report = run_grid(config)
    except GridError as e:
        console.print(f'[red]medres grid:[/red] {e}', highlight=False, soft_wrap=True)
        return 2
    console.print(Markdown(report.markdown))
    if report.comparisons:
        console.print(Markdown(comparisons_markdown(report.comparisons)))
    files = [report.table_csv, report.table_md, report.heatmap_png, report.comparisons_csv, report.comparisons_md]
    console.print('wrote: ' + ', '.join(str(f) for f in files if f), highlight=False, soft_wrap=True)
    console.print(f'cells (predictions, visual tokens, scores, logs): {config.workdir / "cells"}', highlight=False)
    return 0


def cmd_sweep(args) -> int:
    from rich.markdown import Markdown

    from .grid import GridError
    from .sweep import markdown, run_sweep

    model = str(Path(args.model).resolve()) if Path(args.model).exists() else args.model
    try:
        rows, best, cheapest, files = run_sweep(model, args.dataset, Path(args.workdir).resolve(), args.pixels,
                                                args.swift_args, 'compat' if args.compat else 'strict', args.redo,
                                                args.n_boot, args.seed)
    except GridError as e:
        console.print(f'[red]medres sweep:[/red] {e}', highlight=False, soft_wrap=True)
        return 2
    console.print(Markdown(markdown(rows, best, cheapest)))
    console.print('wrote: ' + ', '.join(str(f) for f in files.values()), highlight=False, soft_wrap=True)
    return 0


def cmd_probe(args) -> int:
    from rich.markdown import Markdown

    from .grid import GridError, comparisons_markdown
    from .probe.arms import ProbeConfig
    from .probe.pattern import breakdown_markdown, checks_markdown
    from .probe.run import run_probe

    config = ProbeConfig.preset('quick' if args.quick else 'default', seed=args.seed)
    try:
        report = run_probe(config, Path(args.workdir), data_home_dir=Path(args.data_home) if args.data_home else None,
                           n_boot=args.n_boot)
    except GridError as e:
        console.print(f'[red]medres probe:[/red] {e}', highlight=False, soft_wrap=True)
        return 2
    console.print(Markdown(report.grid.markdown))
    console.print(Markdown(comparisons_markdown(report.grid.comparisons)))
    console.print(Markdown('**The paper\'s pattern on the probe**\n\n' + checks_markdown(report.checks)))
    console.print(Markdown('**Which cue each model reads** (accuracy, points)\n\n' + breakdown_markdown(report.breakdown)))
    tokens = {r.spec.inference: r.mean_visual_tokens for r in report.grid.results}
    console.print('visual tokens per test image: ' + ', '.join(f'{k} {v:g}' for k, v in tokens.items() if v is not None),
                  highlight=False)
    verdict = 'holds' if report.holds else 'does NOT hold: ' + ', '.join(c.name for c in report.checks if not c.holds)
    console.print(f'pattern {verdict}; {report.wall_seconds / 60:.1f} min', highlight=False)
    console.print(f'wrote: {report.folder / "probe.json"}, {report.folder / "pattern.md"}, {report.grid.heatmap_png}',
                  highlight=False, soft_wrap=True)
    return 1 if args.check and not report.holds else 0


def add_policy_args(p) -> None:
    p.add_argument('--low-pixels', type=int, help='low budget in pixels (MEDRES_LOW_PIXELS)')
    p.add_argument('--low-scale', type=float, help='low as a per-side scale (MEDRES_LOW_SCALE)')
    p.add_argument('--native-max-pixels', type=int, help='native cap (MEDRES_NATIVE_MAX_PIXELS)')
    p.add_argument('--mix-seed', type=int, help='mixed-inference draw seed (MEDRES_MIX_SEED)')
    p.add_argument('--filter', choices=['lanczos', 'bicubic', 'bilinear', 'box', 'nearest'])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='medres', description=__doc__)
    p.add_argument('--registry', action='append', default=[], metavar='DIR',
                   help='extra registry folder (repeatable; also MEDRES_REGISTRY)')
    sub = p.add_subparsers(dest='command', required=True)

    d = sub.add_parser('datasets', help='list the dataset registry')
    d.add_argument('--json', action='store_true', help='print the entries as JSON')
    d.set_defaults(func=cmd_datasets)

    pp = sub.add_parser('plugin-path', help='print the ms-swift plugin file for --external_plugins')
    pp.set_defaults(func=cmd_plugin_path)

    tk = sub.add_parser('tokens', help='visual tokens and relative compute of a resolution policy, per split')
    tk.add_argument('--dataset', action='append', default=[], metavar='NAME[:SPLIT[/SPLIT]]',
                    help='registry dataset (repeatable; in the order a run loads them)')
    tk.add_argument('--jsonl', action='append', default=[], metavar='FILE', help='ms-swift jsonl with images')
    tk.add_argument('--family', default='qwen2_vl', help='qwen2_vl | internvl | llava_onevision (or a template type)')
    tk.add_argument('--resolution', choices=['native', 'low', 'mixed'],
                    help='one policy (default: all three side by side; MEDRES_* variables give the defaults)')
    tk.add_argument('--low-pixels', type=int)
    tk.add_argument('--low-scale', type=float)
    tk.add_argument('--native-max-pixels', type=int)
    tk.add_argument('--mix-ratio', type=float)
    tk.add_argument('--seed', type=int)
    tk.add_argument('--balance', choices=['modality', 'dataset', 'none'])
    tk.add_argument('--upsample-from-low', action='store_true')
    tk.add_argument('--json', action='store_true')
    tk.set_defaults(func=cmd_tokens)

    rc = sub.add_parser('recipes', help='regenerate recipes/train and recipes/infer from recipes/src')
    rc.add_argument('command', choices=['build'])
    rc.add_argument('--check', action='store_true', help='write nothing; exit 1 if any recipe is out of date')
    rc.set_defaults(func=cmd_recipes)

    tr = sub.add_parser('train', help='launch a training recipe with the global batch of 128 done for you',
                        usage='medres train RECIPE [options] [-- swift sft flags]',
                        description='Everything after -- goes to swift sft unchanged.')
    tr.add_argument('recipe', help='recipes/train/<model>-<tuning>-<resolution>.yaml')
    tr.add_argument('--nproc-per-node', type=int, default=1, help='GPUs per node')
    tr.add_argument('--nnodes', type=int, default=1)
    tr.add_argument('--node-rank', type=int, default=0)
    tr.add_argument('--master-addr', help='address of node 0 (multi-node)')
    tr.add_argument('--master-port', type=int)
    tr.add_argument('--micro-batch', type=int, default=1, help='per-GPU batch that fits in memory')
    tr.add_argument('--global-batch', type=int, default=128, help='the paper uses 128')
    tr.add_argument('--zero3', action='store_true', help='DeepSpeed ZeRO-3 instead of ZeRO-2 (e.g. the 7B)')
    tr.add_argument('--dry-run', action='store_true', help='print the plan and the command, run nothing')
    tr.set_defaults(func=cmd_train, swift_args=[])

    g = sub.add_parser('grid', help='train x inference resolution grid: swift infer per cell, scores, tables, '
                                    'McNemar tests', usage='medres grid --arm LABEL=CKPT ... --dataset NAME ... '
                                                           '[options] [-- swift infer flags]')
    g.add_argument('--arm', action='append', required=True, metavar='LABEL=CHECKPOINT',
                   help='training arm: none=<base model>, low=..., native=..., mixed=... (repeatable)')
    g.add_argument('--dataset', action='append', required=True, metavar='NAME[:SPLIT]')
    g.add_argument('--inference', nargs='+', default=['low', 'native', 'mixed'], choices=['low', 'native', 'mixed'])
    g.add_argument('--split', default='test', help='split for datasets given without one')
    g.add_argument('--workdir', default='medres-grid', help='cells, tables and plots go here; rerun to resume')
    g.add_argument('--compat', action='store_true', help="score with the paper's substring rules")
    g.add_argument('--compare-paper', nargs='?', const='auto', metavar='MODEL',
                   help="put the paper's numbers beside (model name, or taken from --arm none=<hub id>)")
    g.add_argument('--redo', action='store_true', help='recompute finished cells too')
    g.add_argument('--n-boot', type=int, default=2000)
    g.add_argument('--seed', type=int, default=0, help='bootstrap seed')
    add_policy_args(g)
    g.set_defaults(func=cmd_grid, swift_args=[])

    sw = sub.add_parser('sweep', help='zero-shot: one model over inference resolutions; recommends one',
                        usage='medres sweep --model MODEL --dataset NAME[:SPLIT] [options] [-- swift infer flags]')
    sw.add_argument('--model', required=True, help='hub id or checkpoint folder')
    sw.add_argument('--dataset', required=True, metavar='NAME[:SPLIT]', help='default split: validation, else test')
    sw.add_argument('--pixels', nargs='+', type=int, default=[200704, 401408, 1003520, 2007040],
                    help='low budgets to try (native is always added)')
    sw.add_argument('--workdir', default='medres-sweep')
    sw.add_argument('--compat', action='store_true')
    sw.add_argument('--redo', action='store_true')
    sw.add_argument('--n-boot', type=int, default=2000)
    sw.add_argument('--seed', type=int, default=0)
    sw.set_defaults(func=cmd_sweep, swift_args=[])

    pr = sub.add_parser('probe', help='offline benchmark: tiny models trained at low / native / mixed on a synthetic '
                                      'dataset, the train x inference grid, the paper\'s pattern checked')
    pr.add_argument('--quick', action='store_true', help='a few steps on 64 images: checks the pipeline, not the pattern')
    pr.add_argument('--seed', type=int, default=0, help='data, model init and training seed')
    pr.add_argument('--workdir', default='medres-probe', help='arms, grid and report go here; rerun to resume')
    pr.add_argument('--data-home', help='where the generated images go (default: $MEDRES_DATA_HOME)')
    pr.add_argument('--n-boot', type=int, default=2000)
    pr.add_argument('--check', action='store_true', help='exit 1 when the pattern does not hold')
    pr.set_defaults(func=cmd_probe)

    demo = sub.add_parser('demo', help='offline tiny end-to-end: train at native and low resolution, infer')
    demo.add_argument('--workdir', default='medres-demo', help='where models, data and outputs go')
    demo.add_argument('--max-steps', type=int, default=4)
    demo.set_defaults(func=cmd_demo)

    add_score_parser(sub)
    from .prepare import add_prepare_parser
    add_prepare_parser(sub)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after `--` is passed to swift unchanged (medres train).
    passthrough = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    args = build_parser().parse_args(argv)
    if passthrough:
        if not hasattr(args, 'swift_args'):
            raise SystemExit(f'medres {args.command}: does not take arguments after --')
        args.swift_args = passthrough
    if args.registry:
        # Through the environment, so that the swift runs a command starts see the same registry.
        dirs = [os.environ.get(REGISTRY_ENV, '')] + [os.path.abspath(d) for d in args.registry]
        os.environ[REGISTRY_ENV] = os.pathsep.join(d for d in dirs if d)
    try:
        return args.func(args)
    except RegistryError as e:
        console.print(f'[red]registry error:[/red] {e}', highlight=False)
        return 2


if __name__ == '__main__':
    sys.exit(main())
