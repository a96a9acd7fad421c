"""`medres train`: launch a training recipe with the paper's global batch done exactly."""
from __future__ import annotations

import sys
from pathlib import Path

from ..vocabulary import PAPER_GLOBAL_BATCH

NAME = 'train'


def register(sub) -> None:
    tr = sub.add_parser(NAME, help=f'launch a training recipe with the global batch of {PAPER_GLOBAL_BATCH} done for you',
                        usage='medres train RECIPE [options] [-- swift sft flags]',
                        description='Everything after -- goes to swift sft unchanged (e.g. -- --model <local folder> '
                                    '--dataset medres/<name>). Without a CUDA GPU or without DeepSpeed the recipe '
                                    'runs without DeepSpeed (and in float32 on CPU), said in one line.')
    tr.add_argument('recipe', help='a recipe file, or a shipped recipe by name (`medres recipes list`, '
                                   'e.g. qwen2-vl-2b-full-mixed)')
    tr.add_argument('--nproc-per-node', type=int, default=1, help='GPUs per node')
    tr.add_argument('--nnodes', type=int, default=1, help='nodes')
    tr.add_argument('--node-rank', type=int, default=0, help='this node\'s rank (multi-node)')
    tr.add_argument('--master-addr', help='address of node 0 (multi-node)')
    tr.add_argument('--master-port', type=int, help='port on node 0 (multi-node)')
    tr.add_argument('--micro-batch', type=int, default=1, help='per-GPU batch that fits in memory')
    tr.add_argument('--global-batch', type=int, default=PAPER_GLOBAL_BATCH,
                    help=f'total batch (the paper uses {PAPER_GLOBAL_BATCH}; lower it for a small dataset)')
    tr.add_argument('--zero3', action='store_true', help='DeepSpeed ZeRO-3 instead of ZeRO-2 (e.g. the 7B)')
    tr.add_argument('--dry-run', action='store_true',
                    help='print the plan (batch, memory, tokens, compute) and the command, run nothing')
    tr.add_argument('--gpu-memory', type=float, default=80.0, metavar='GIB',
                    help='--dry-run: memory per GPU the plan fits micro-batches into (default 80)')
    tr.add_argument('--gpu-tflops', type=float, default=125.0,
                    help='--dry-run: effective TFLOP/s per GPU for the time estimate (default 125, ~40%% of an '
                         'A100\'s bf16 peak)')
    tr.add_argument('--no-data', action='store_true',
                    help='--dry-run: skip reading the dataset\'s image headers and text (no tokens per sample)')
    tr.set_defaults(run=run, swift_args=[])


def recipe_file(text: str) -> Path:
    """A recipe file as given, else a shipped recipe by name."""
    from ..errors import LaunchError, UsageError
    from ..train.recipes import recipe_path
    if Path(text).is_file():
        return Path(text)
    try:
        return recipe_path(text)
    except UsageError:
        raise LaunchError(f'recipe not found: {text} (a recipe file, or a shipped recipe name: '
                          '`medres recipes list` shows them)') from None


def run(args) -> int:
    from ..errors import LaunchError
    from ..train.launch import (
        Machine,
        batch_plan,
        fixed_steps,
        launch_command,
        launch_env,
        machine_flags,
        recipe_config,
        step_warning,
        train_rows,
    )
    from ..train.launch import run as launch
    recipe = recipe_file(args.recipe)
    cfg = recipe_config(recipe)
    plan = batch_plan(args.micro_batch, args.nproc_per_node, args.nnodes, args.global_batch)
    env = launch_env(plan, node_rank=args.node_rank, master_addr=args.master_addr, master_port=args.master_port)
    try:
        added, note = machine_flags(cfg, args.swift_args, Machine.detect(), zero3=args.zero3,
                                    nproc_per_node=args.nproc_per_node)
    except LaunchError as e:
        if not args.dry_run:
            raise
        # A dry run plans for another machine too (a login node planning a GPU job): say, don't stop.
        added, note = [], f'on this machine the run would stop: {e}'
    if note:
        print(f'medres train: {note}', flush=True)
    rows = None if fixed_steps(cfg, args.swift_args) else train_rows(cfg, args.swift_args, args.settings)
    warning = step_warning(rows, plan, cfg, args.swift_args)
    if warning:
        print(f'medres train: warning: {warning}', file=sys.stderr, flush=True)
    cmd = launch_command(recipe, plan, zero3=args.zero3, extra=[*added, *args.swift_args])
    code = launch(recipe, plan, env, cmd, args.dry_run, base_env=args.env)
    if args.dry_run:
        print_memory_plan(args, recipe, plan)
    return code


def print_memory_plan(args, recipe: Path, batch) -> None:
    """The memory and compute plan of the recipe as the user asked for it (the flags medres adds for
    this machine left out: a dry run on a login node plans the GPU job). Estimates; see README
    "The four checkpoints"."""
    from ..train.plan import plan_recipe
    plan = plan_recipe(recipe.read_text(), gpus=batch.world_size, micro_batch=batch.micro_batch,
                       zero3=args.zero3, extra=args.swift_args, gpu_memory_gib=args.gpu_memory,
                       settings=args.settings, read_data=not args.no_data, gpu_tflops=args.gpu_tflops)
    if plan is None:
        print('medres train: no memory plan: medres ships the configuration of the recipes\' four checkpoints only')
        return
    print('\n'.join('medres train: ' + line for line in plan.lines()), flush=True)
