"""`medres study`: train every resolution arm through the recipes, run the train x inference grid,
write the report. Without a model and data it runs the embedded default (`--demo`)."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import EXIT_CHECK_FAILED
from ..vocabulary import PAPER_GLOBAL_BATCH, TRAINING_ARMS, Env
from .common import add_bootstrap_args, add_policy_args

NAME = 'study'
DEMO_SIZES = ('quick', 'demo', 'default')


def register(sub) -> None:
    s = sub.add_parser(NAME, help='the paper\'s experiment as one resumable command: train every arm, the grid, '
                                  'a report (no model and data: the offline demo)',
                       usage='medres study [--model KEY|PATH --dataset NAME ...] [options] [-- swift sft flags]',
                       description='Trains each resolution arm through recipes/train/<model>-<tuning>-<resolution>.yaml '
                                   'with medres train, runs the train x inference grid, writes report/index.html and '
                                   'report.md. Rerun the same command to resume. Everything after -- goes to every '
                                   'swift sft.')
    s.add_argument('--model', help='recipe model key (qwen2-vl-2b, qwen2-vl-7b, internvl2.5-2b, llava-onevision), one '
                                   'of their hub ids, or a local checkpoint folder')
    s.add_argument('--recipe-model', metavar='KEY', help='the recipe family of a --model given by another hub id')
    s.add_argument('--dataset', action='append', default=[], metavar='NAME',
                   help='registry dataset (repeatable); one model per dataset and arm, as in the paper')
    s.add_argument('--arms', default=','.join(TRAINING_ARMS),
                   help=f'training arms, comma-separated (default {",".join(TRAINING_ARMS)}; none = the base model)')
    s.add_argument('--tuning', choices=('full', 'lora'), default='full', help='full finetuning (the paper) or LoRA')
    s.add_argument('--sweep', action='store_true', help='add the zero-shot inference-resolution sweep of the base model')
    s.add_argument('--sweep-pixels', type=int, nargs='+', metavar='PIXELS',
                   help='low budgets of the sweep in pixels (default: 256, 512, 1280, 2560 Qwen2-VL tokens)')
    s.add_argument('--sweep-split', help='split of the sweep (default: validation where the dataset has one, else test)')
    s.add_argument('--train-split', default='train', help='split each arm trains on (default train)')
    s.add_argument('--eval-split', default='test', help='split the grid evaluates (default test)')
    s.add_argument('--workdir', help='arms, cells and the report go here; rerun to resume '
                                     '(default medres-study, medres-demo with --demo)')
    s.add_argument('--nproc-per-node', type=int, default=1, help='GPUs per training run')
    s.add_argument('--micro-batch', type=int, default=1, help='per-GPU batch that fits in memory')
    s.add_argument('--global-batch', type=int, default=PAPER_GLOBAL_BATCH,
                   help=f'total batch (the paper: {PAPER_GLOBAL_BATCH})')
    s.add_argument('--zero3', action='store_true', help='DeepSpeed ZeRO-3 instead of ZeRO-2 (e.g. the 7B)')
    s.add_argument('--infer-args', default='', metavar='"FLAGS"', help='flags for every swift infer, quoted as one '
                                                                        'string (e.g. "--infer_backend vllm")')
    s.add_argument('--plan', '--dry-run', dest='plan', action='store_true',
                   help='print the plan (samples, steps, visual tokens, FLOPs) and the arms\' commands; run nothing')
    s.add_argument('--tokens-per-second', type=float,
                   help='your measured training throughput per GPU in visual tokens/s: the plan adds GPU hours')
    s.add_argument('--redo', action='store_true', help='retrain arms and recompute cells made with other settings')
    s.add_argument('--compat', action='store_true', help="score with the paper's substring rules")
    s.add_argument('--demo', action='store_true', help='the embedded default: a tiny model on the synthetic probe '
                                                       'dataset, offline on CPU (also without --model and --dataset)')
    s.add_argument('--size', choices=DEMO_SIZES, default='demo',
                   help='--demo size: quick (pipeline check), demo (a few minutes), default (the probe\'s pattern)')
    s.add_argument('--replicate-seed', type=int, default=0,
                   help='--demo: seeds the generated data, the model\'s initialisation and the training order')
    s.add_argument('--data-home', help=f'--demo: where the generated images go (default: ${Env.DATA_HOME})')
    s.add_argument('--check', action='store_true',
                   help=f'--demo: exit {EXIT_CHECK_FAILED} when the paper\'s pattern does not hold on the probe')
    add_bootstrap_args(s)
    add_policy_args(s)
    s.set_defaults(run=run, swift_args=[])


def run(args) -> int:
    from ..errors import UsageError
    if args.demo or (not args.model and not args.dataset):
        if args.model or args.dataset:
            raise UsageError('--demo brings its own model and data: leave out --model and --dataset')
        return run_demo(args, args.size, args.replicate_seed, workdir=args.workdir or 'medres-demo',
                        data_home=args.data_home, check=args.check, plan=args.plan, sweep=args.sweep,
                        swift_args=args.swift_args)
    if not args.model or not args.dataset:
        raise UsageError('medres study needs --model and at least one --dataset (or --demo for the offline default)')
    from ..study.model import resolve_model
    from ..study.run import StudyConfig
    from .common import policy_overrides
    options = {}
    if args.sweep_pixels:
        options['sweep_budgets'] = tuple(args.sweep_pixels)
    if args.sweep_split:
        options['sweep_split'] = args.sweep_split
    config = StudyConfig(
        Path(args.workdir or 'medres-study'), resolve_model(args.model, args.recipe_model), list(args.dataset),
        arms=tuple(a.strip() for a in args.arms.split(',') if a.strip()), tuning=args.tuning, sweep=args.sweep,
        nproc_per_node=args.nproc_per_node, micro_batch=args.micro_batch, global_batch=args.global_batch,
        zero3=args.zero3, train_split=args.train_split, eval_split=args.eval_split, swift_args=tuple(args.swift_args),
        infer_args=tuple(shlex.split(args.infer_args)), policy_overrides=policy_overrides(args),
        mode='compat' if args.compat else 'strict', n_boot=args.n_boot, bootstrap_seed=args.bootstrap_seed,
        tokens_per_second=args.tokens_per_second, redo=args.redo, settings=args.settings, base_env=args.env,
        command_line=getattr(args, 'command_line', ''), **options)
    return execute(config, plan=args.plan)


def run_demo(args, size: str, seed: int, *, workdir: str, data_home, check: bool = False, plan: bool = False,
             sweep: bool = False, swift_args=()) -> int:
    from dataclasses import replace

    from ..probe.config import ProbeConfig
    from ..study.demo import probe_study
    settings = replace(args.settings, data_home=Path(data_home).resolve()) if data_home else args.settings
    config = probe_study(ProbeConfig.preset(size, seed), Path(workdir), settings=settings, base_env=args.env,
                         n_boot=args.n_boot, redo=getattr(args, 'redo', False), sweep=sweep, swift_args=tuple(swift_args),
                         command_line=getattr(args, 'command_line', ''))
    return execute(config, plan=plan, check=check)


def execute(config, *, plan: bool = False, check: bool = False) -> int:
    from rich.markdown import Markdown

    from ..study.run import run_study
    from .common import console
    if plan:
        for job in config.jobs(config.entries()):
            console.print(f'{job.dataset} {job.arm}: medres {shlex.join(job.launcher)} -- {shlex.join(job.swift_args)}',
                          highlight=False, soft_wrap=True)
        run_study(config, plan_only=True)
        return 0
    result = run_study(config)
    console.print(Markdown(result.grid_md))
    if result.comparisons_md:
        console.print(Markdown(result.comparisons_md))
    if result.probe is not None and result.probe['checks']:
        from ..probe.pattern import PatternCheck, breakdown_markdown, checks_markdown
        checks = [PatternCheck(**c) for c in result.probe['checks']]
        console.print(Markdown('**The paper\'s pattern on the probe**\n\n' + checks_markdown(checks)))
        console.print(Markdown('**Which cue each model reads** (accuracy, points)\n\n' +
                               breakdown_markdown(result.probe['breakdown'])))
    tokens = {}
    for r in result.cells:
        tokens.setdefault(r.spec.inference, r.mean_visual_tokens)
    console.print('visual tokens per test image: ' + ', '.join(f'{k} {v:g}' for k, v in tokens.items() if v is not None),
                  highlight=False)
    if result.probe_holds is not None:
        verdict = 'holds' if result.probe_holds else 'does NOT hold: ' + ', '.join(
            c['name'] for c in result.probe['checks'] if not c['holds'])
        console.print(f'pattern {verdict}', highlight=False)
    console.print(f'study finished in {result.wall_seconds / 60:.1f} min; report: {result.report_html} '
                  f'(and {result.report_md.name}); everything else under {config.workdir}', highlight=False, soft_wrap=True)
    return EXIT_CHECK_FAILED if check and result.probe_holds is False else 0
