"""`medres train`: the batch arithmetic for a recipe, then ms-swift's own torchrun launch.

micro-batch x gradient accumulation x (GPUs per node x nodes) must equal the recipe's global
batch (the paper's 128) exactly; a combination that cannot is refused with the micro-batches
that would work. Multi-GPU and multi-node runs go through `swift sft` with NPROC_PER_NODE,
NNODES, NODE_RANK, MASTER_ADDR and MASTER_PORT, as ms-swift documents.

Before launching it looks at the machine and the data: without a CUDA GPU or without DeepSpeed it
says so in one line and drops what cannot run (the recipe's `deepspeed`, bf16 on CPU), or refuses
with the exact fix when the command line asked for it; and it warns when the batch leaves a run
with fewer than `MIN_STEPS` optimizer steps, naming the batch that would not.
"""
from __future__ import annotations

import math
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ..errors import LaunchError
from ..settings import Settings
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


# ------------------------------------------------------------------------------ the recipe as run

def swift_flag(extra: Sequence[str], name: str) -> Optional[list[str]]:
    """The values of the last `--<name>` among swift flags (`--a_b`, `--a-b`, `--a_b=v`), None when absent."""
    found = None
    for i, token in enumerate(extra):
        flag, eq, value = token.partition('=')
        if flag.startswith('--') and flag[2:].replace('-', '_') == name:
            if eq:
                found = [value]
                continue
            found = []
            for v in extra[i + 1:]:
                if v.startswith('--'):
                    break
                found.append(v)
    return found


def recipe_config(recipe: Path) -> dict:
    import yaml
    try:
        cfg = yaml.safe_load(Path(recipe).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise LaunchError(f'{recipe}: cannot read the recipe: {e}') from None
    if not isinstance(cfg, dict):
        raise LaunchError(f'{recipe}: a recipe is a mapping of swift sft arguments')
    return cfg


def effective(cfg: Mapping[str, Any], extra: Sequence[str], name: str) -> Any:
    """What `swift sft <recipe> <extra>` uses for `name`: the command line's value over the recipe's
    (a list flag as a list, any other as its one value)."""
    values = swift_flag(extra, name)
    if values is None:
        return cfg.get(name)
    return values if name == 'dataset' else (values[-1] if values else '')


# ------------------------------------------------------------------------------ the machine

@dataclass(frozen=True)
class Machine:
    gpus: int          # CUDA devices this process sees
    deepspeed: bool    # DeepSpeed importable

    @classmethod
    def detect(cls) -> 'Machine':
        import importlib.util

        import torch
        return cls(torch.cuda.device_count() if torch.cuda.is_available() else 0,
                   importlib.util.find_spec('deepspeed') is not None)


HALF_DTYPES = ('bfloat16', 'bf16', 'float16', 'fp16', 'half')
DEEPSPEED_INSTALL = "pip install 'medres[deepspeed]'"


def machine_flags(cfg: Mapping[str, Any], extra: Sequence[str], machine: Machine, *, zero3: bool = False,
                  nproc_per_node: int = 1) -> tuple[list[str], Optional[str]]:
    """swift flags this machine needs on top of the recipe, and the one line that says why.

    The recipe's DeepSpeed is dropped (`--deepspeed ''`) where it cannot run: no DeepSpeed installed,
    or no GPU; on CPU its bf16 becomes float32 (transformers refuses bf16 without a GPU). What the
    command line itself asked for (`--zero3`, `-- --deepspeed X`, `-- --torch_dtype bfloat16`) is
    refused instead, with the flags that fix it.
    """
    flags, did = [], []
    cpu = machine.gpus == 0
    ds_cli = effective({}, extra, 'deepspeed')
    ds = ds_cli if ds_cli is not None else ('zero3' if zero3 else cfg.get('deepspeed'))
    if ds and (cpu or not machine.deepspeed):
        if ds_cli is not None or zero3:
            asked = f'--deepspeed {ds}' if ds_cli is not None else '--zero3'
            why = 'DeepSpeed needs a CUDA GPU and none is visible' if cpu else \
                f'DeepSpeed is not installed ({DEEPSPEED_INSTALL})'
            raise LaunchError(f'{asked}: {why}; {"install it, or " if not cpu else ""}drop {asked} to run without it')
        flags += ['--deepspeed', '']
        did.append('without DeepSpeed')
    if cpu:
        dtype_cli = effective({}, extra, 'torch_dtype')
        if dtype_cli in HALF_DTYPES:
            raise LaunchError(f'--torch_dtype {dtype_cli} needs a CUDA GPU and none is visible; '
                              'on CPU pass -- --torch_dtype float32')
        if dtype_cli is None and cfg.get('torch_dtype') in HALF_DTYPES:
            flags += ['--torch_dtype', 'float32']
            did.append('in float32')
        if nproc_per_node > 1:
            raise LaunchError(f'--nproc-per-node {nproc_per_node} asks for {nproc_per_node} GPUs and none is visible '
                              '(CUDA_VISIBLE_DEVICES, drivers?); a CPU run is one process: drop --nproc-per-node')
        line = 'no CUDA GPU visible: running on CPU' + (', ' + ' and '.join(did) if did else '')
        added = f'added {shlex.join(flags)}; ' if flags else ''
        return flags, f'{line} ({added}fine for a tiny model, far too slow for a real one)'
    if nproc_per_node > machine.gpus:
        raise LaunchError(f'--nproc-per-node {nproc_per_node} asks for more GPUs than this node shows ({machine.gpus})')
    if not flags:
        return flags, None
    return flags, (f"DeepSpeed is not installed: running without the recipe's {ds} (added {shlex.join(flags)}; "
                   f'for ZeRO as in the paper: {DEEPSPEED_INSTALL})')


# ------------------------------------------------------------------------------ the data

# Fewer optimizer steps than this leave warmup and the cosine schedule little to do.
MIN_STEPS = 20


def steps_per_epoch(rows: int, micro_batch: int, grad_accum: int, world: int) -> int:
    """Optimizer steps per epoch as the HF Trainer counts them (every rank reads ceil(rows / world))."""
    batches = math.ceil(math.ceil(rows / world) / micro_batch)
    return max(1, math.ceil(batches / grad_accum))


def train_rows(cfg: Mapping[str, Any], extra: Sequence[str], settings: Settings) -> Optional[int]:
    """Training rows of the run, counted cheaply (see data.counts); None when unknown."""
    from ..data.counts import run_rows
    datasets = effective(cfg, extra, 'dataset')
    if not datasets:
        return None
    datasets = [datasets] if isinstance(datasets, str) else list(datasets)
    ratio = 0.0 if effective(cfg, extra, 'val_dataset') else float(effective(cfg, extra, 'split_dataset_ratio') or 0)
    return run_rows(datasets, settings, ratio)


def fixed_steps(cfg: Mapping[str, Any], extra: Sequence[str]) -> bool:
    """Whether the run sets its number of steps itself (`max_steps`)."""
    return int(float(effective(cfg, extra, 'max_steps') or -1)) > 0


def step_warning(rows: Optional[int], plan: BatchPlan, cfg: Mapping[str, Any], extra: Sequence[str]) -> Optional[str]:
    """A warning when the run will make fewer than MIN_STEPS optimizer steps, with the batch (or the
    epochs) that would make enough; None when it makes enough, sets --max_steps, or rows are unknown."""
    if rows is None or rows < 1 or fixed_steps(cfg, extra):
        return None
    epochs = float(effective(cfg, extra, 'num_train_epochs') or 3)
    world = plan.world_size

    def steps(global_batch: int) -> tuple[int, int]:
        per_epoch = steps_per_epoch(rows, plan.micro_batch, global_batch // (plan.micro_batch * world), world)
        return per_epoch, math.ceil(epochs * per_epoch)

    per_epoch, total = steps(plan.global_batch)
    if total >= MIN_STEPS:
        return None
    per_step = plan.micro_batch * world
    candidates = [per_step * 2 ** k for k in range(16) if per_step * 2 ** k < plan.global_batch]
    enough = [b for b in candidates if steps(b)[1] >= MIN_STEPS]
    if enough:
        fix = f'lower the batch: --global-batch {enough[-1]} gives {steps(enough[-1])[1]} steps'
    else:
        need = math.ceil(MIN_STEPS / steps(per_step)[0])
        fix = f'lower the batch and train longer: --global-batch {per_step} -- --num_train_epochs {need}'
    return (f'this run makes {total} optimizer step{"s" if total != 1 else ""} ({rows:,} training rows / batch '
            f'{plan.global_batch} = {per_epoch} per epoch x {epochs:g} epochs); under ~{MIN_STEPS} steps the '
            f'learning-rate warmup and decay barely run. To fix, {fix}')


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
