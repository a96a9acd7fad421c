"""`medres train`: launch a training recipe with the paper's global batch done exactly."""
from __future__ import annotations

from pathlib import Path

from ..vocabulary import PAPER_GLOBAL_BATCH

NAME = 'train'


def register(sub) -> None:
    tr = sub.add_parser(NAME, help=f'launch a training recipe with the global batch of {PAPER_GLOBAL_BATCH} done for you',
                        usage='medres train RECIPE [options] [-- swift sft flags]',
                        description='Everything after -- goes to swift sft unchanged.')
    tr.add_argument('recipe', help='recipes/train/<model>-<tuning>-<resolution>.yaml (or a copy of one)')
    tr.add_argument('--nproc-per-node', type=int, default=1, help='GPUs per node')
    tr.add_argument('--nnodes', type=int, default=1, help='nodes')
    tr.add_argument('--node-rank', type=int, default=0, help='this node\'s rank (multi-node)')
    tr.add_argument('--master-addr', help='address of node 0 (multi-node)')
    tr.add_argument('--master-port', type=int, help='port on node 0 (multi-node)')
    tr.add_argument('--micro-batch', type=int, default=1, help='per-GPU batch that fits in memory')
    tr.add_argument('--global-batch', type=int, default=PAPER_GLOBAL_BATCH,
                    help=f'total batch (the paper uses {PAPER_GLOBAL_BATCH})')
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


def run(args) -> int:
    from ..train.launch import batch_plan, launch_command, launch_env
    from ..train.launch import run as launch
    plan = batch_plan(args.micro_batch, args.nproc_per_node, args.nnodes, args.global_batch)
    env = launch_env(plan, node_rank=args.node_rank, master_addr=args.master_addr, master_port=args.master_port)
    cmd = launch_command(Path(args.recipe), plan, zero3=args.zero3, extra=args.swift_args)
    code = launch(Path(args.recipe), plan, env, cmd, args.dry_run, base_env=args.env)
    if args.dry_run:
        print_memory_plan(args, plan)
    return code


def print_memory_plan(args, batch) -> None:
    """The memory and compute plan of the recipe as launched (estimates; see README "The four checkpoints")."""
    from ..train.plan import plan_recipe
    plan = plan_recipe(Path(args.recipe).read_text(), gpus=batch.world_size, micro_batch=batch.micro_batch,
                       zero3=args.zero3, extra=args.swift_args, gpu_memory_gib=args.gpu_memory,
                       settings=args.settings, read_data=not args.no_data, gpu_tflops=args.gpu_tflops)
    if plan is None:
        print('medres train: no memory plan: medres ships the configuration of the recipes\' four checkpoints only')
        return
    print('\n'.join('medres train: ' + line for line in plan.lines()), flush=True)
