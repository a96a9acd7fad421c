"""`medres train`: the batch arithmetic for a recipe, then ms-swift's own torchrun launch.

micro-batch x gradient accumulation x (GPUs per node x nodes) must equal the recipe's global
batch (the paper's 128) exactly; a combination that cannot is refused with the micro-batches
that would work. Multi-GPU and multi-node runs go through `swift sft` with NPROC_PER_NODE,
NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT, as ms-swift documents.
"""
from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..errors import LaunchError
from .recipes import GLOBAL_BATCH
from .swift_run import PLUGIN_PATH, swift_executable


@dataclass(frozen=True)
class BatchPlan:
    micro_batch: int
    grad_accum: int
    nproc_per_node: int
    nnodes: int

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes

    @property
    def global_batch(self) -> int:
        return self.micro_batch * self.grad_accum * self.world_size

    def describe(self) -> str:
        return (f'{self.micro_batch} per GPU x {self.grad_accum} accumulation x {self.world_size} GPUs '
                f'({self.nnodes} node(s) x {self.nproc_per_node}) = {self.global_batch}')


def batch_plan(micro_batch: int, nproc_per_node: int, nnodes: int = 1, global_batch: int = GLOBAL_BATCH) -> BatchPlan:
    for name, v in (('micro-batch', micro_batch), ('GPUs per node', nproc_per_node), ('nodes', nnodes),
                    ('global batch', global_batch)):
        if v < 1:
            raise LaunchError(f'{name} must be at least 1, got {v}')
    per_step = micro_batch * nproc_per_node * nnodes
    if global_batch % per_step:
        world = nproc_per_node * nnodes
        ok = [m for m in range(1, global_batch + 1) if global_batch % (m * world) == 0]
        hint = (f'micro-batches that reach it on {world} GPUs: {ok}' if ok else
                f'no micro-batch reaches {global_batch} on {world} GPUs: use a GPU count that divides it')
        raise LaunchError(f'cannot reach a global batch of {global_batch} exactly with micro-batch {micro_batch} '
                          f'on {world} GPUs ({per_step} samples per step); {hint}')
    return BatchPlan(micro_batch, global_batch // per_step, nproc_per_node, nnodes)


def launch_command(recipe: Path, plan: BatchPlan, *, zero3: bool = False,
                   extra: Sequence[str] = ()) -> list[str]:
    cmd = [swift_executable(), 'sft', str(recipe), '--external_plugins', str(PLUGIN_PATH),
           '--per_device_train_batch_size', str(plan.micro_batch),
           '--gradient_accumulation_steps', str(plan.grad_accum)]
    if zero3:
        cmd += ['--deepspeed', 'zero3']
    return cmd + list(extra)


def launch_env(plan: BatchPlan, *, node_rank: int = 0, master_addr: Optional[str] = None,
               master_port: Optional[int] = None) -> dict[str, str]:
    """torchrun variables ms-swift reads; none for a single process, which needs no launcher."""
    if plan.world_size == 1:
        return {}
    env = {'NPROC_PER_NODE': str(plan.nproc_per_node), 'NNODES': str(plan.nnodes), 'NODE_RANK': str(node_rank)}
    if plan.nnodes > 1:
        if not master_addr:
            raise LaunchError('a multi-node run needs --master-addr (the address of node 0)')
        env['MASTER_ADDR'] = master_addr
    if master_port:
        env['MASTER_PORT'] = str(master_port)
    return env


def run(recipe: Path, plan: BatchPlan, env: dict[str, str], cmd: list[str], dry_run: bool,
        base_env: Mapping[str, str]) -> int:
    """Print the plan and command; unless `dry_run`, run it in `base_env` plus the launcher's `env`."""
    if not recipe.is_file():
        raise LaunchError(f'recipe not found: {recipe}')
    shown = ' '.join(f'{k}={v}' for k, v in env.items()) + (' ' if env else '') + shlex.join(cmd)
    print(f'medres train: {plan.describe()}')
    print(f'medres train: {shown}', flush=True)
    if dry_run:
        return 0
    return subprocess.run(cmd, env={**base_env, **env}).returncode
