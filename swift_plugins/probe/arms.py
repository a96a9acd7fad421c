"""Train the probe's arms through the project's recipes.

An arm is `recipes/train/qwen2-vl-2b-full-<resolution>.yaml` launched by `medres train` with only
what a CPU and a toy require overridden after `--` (the tiny model, fp32, no DeepSpeed, the
probe's steps / learning rate / batch); the resolution comes from the recipe's own `ENV:` section.
The policy settings the probe changes (the low budget, where the dataset lives, the token log)
travel in environment variables, as everywhere in medres. Inference is `medres grid`'s job
(`swift_plugins.probe.run`); `infer_overrides` are the flags its cells add.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Optional

from ..fixtures.tiny_qwen2_vl import TinyQwen2VLSpec, build_tiny_qwen2_vl
from ..settings import Settings
from ..train.recipes import RECIPES_DIR
from ..train.swift_run import last_checkpoint, run_logged
from ..vocabulary import OFFLINE_ENV, PAPER_MIX_RATIO, POLICY_ENV, RESOLUTION_MODES, Env
from .generator import ENTRY_NAME, ProbeDataSpec, dataset_root, write_probe

TRAIN_RESOLUTIONS = RESOLUTION_MODES
# The recipe family the arms run: Qwen2-VL-2B full finetuning, with the model swapped for a tiny one.
RECIPE_MODEL = 'qwen2-vl-2b-full'
SIZES = ('quick', 'default')


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation of every arm (the same for low, native and mixed)."""
    max_steps: int = 400
    batch_size: int = 16
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    lr_scheduler_type: str = 'cosine'
    seed: int = 42


@dataclass(frozen=True)
class ProbeConfig:
    """One probe: data, model, training, the low budget. `preset()` gives the two standard sizes."""
    size: str
    seed: int
    data: ProbeDataSpec
    model: TinyQwen2VLSpec
    train: TrainSpec
    # A quarter of the native pixels (224x224 -> 112x112): exactly 2x per side, which cancels the fine cue.
    low_pixels: int = 112 * 112
    mix_ratio: float = PAPER_MIX_RATIO
    max_new_tokens: int = 4
    infer_batch: int = 32

    @classmethod
    def preset(cls, size: str = 'default', seed: int = 0) -> 'ProbeConfig':
        if size not in SIZES:
            raise ValueError(f'probe size must be one of {SIZES}, got {size!r}')
        model = PROBE_MODEL
        if size == 'quick':
            data = ProbeDataSpec(n_train=64, n_validation=0, n_test=32, seed=seed)
            train = TrainSpec(max_steps=8, batch_size=8, seed=42 + seed)
        else:
            data = ProbeDataSpec(n_train=1600, n_validation=0, n_test=400, seed=seed)
            train = TrainSpec(seed=42 + seed)
        return cls(size=size, seed=seed, data=data, model=replace(model, seed=seed), train=train)

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def describe(self) -> str:
        d, m, t = self.data, self.model, self.train
        return (f'probe {self.size} (seed {self.seed}): {d.n_train} train / {d.n_test} test images of {d.size}x{d.size}, '
                f'low {self.low_pixels:,} px; tiny Qwen2-VL (ViT {m.vision_depth}x{m.vision_embed_dim}, '
                f'LLM {m.num_hidden_layers}x{m.hidden_size}); {t.max_steps} steps x {t.batch_size}, lr {t.learning_rate:g}')


# The skeleton's tiny Qwen2-VL: the period-2 striation is one fixed pixel pattern in every 14x14
# patch, so 2 ViT blocks of width 32 learn it in a few dozen steps (benchmarks/probe_design.md).
PROBE_MODEL = TinyQwen2VLSpec(vision_depth=2, vision_embed_dim=32, vision_num_heads=2)


# ------------------------------------------------------------------------------ data, model, env

def prepare_probe(config: ProbeConfig, data_home_dir: Path, *, force: bool = False) -> Path:
    """Write (or reuse) the dataset of `config`; returns the dataset folder `<root>/probe`."""
    out = dataset_root(config.data, data_home_dir) / ENTRY_NAME
    write_probe(config.data, out, force=force)
    return out


def build_probe_model(config: ProbeConfig, workdir: Path) -> Path:
    """The random-init tiny model every arm starts from (built once per model spec)."""
    key = hashlib.sha256(json.dumps(asdict(config.model), sort_keys=True).encode()).hexdigest()[:12]
    return build_tiny_qwen2_vl(Path(workdir) / 'models' / f'tiny-qwen2-vl-{key}', config.model)


def probe_settings(config: ProbeConfig, settings: Settings) -> Settings:
    """`settings` with the probe's dataset root as the local source of `medres/probe`."""
    return replace(settings, local_sources=dataset_root(config.data, settings.data_home))


def probe_env(config: ProbeConfig, data_home_dir: Path, *, base: Mapping[str, str]) -> dict[str, str]:
    """The complete environment of a probe `swift` run (train or infer).

    Starts from `base` without any inherited policy variable (an inherited one would override the
    recipe's `ENV:` section: ms-swift lets the environment win), so the recipe decides the
    resolution; then sets the probe's own: offline hubs, `MEDRES_LOCAL_SOURCES` at this
    configuration's dataset root, `MEDRES_LOW_PIXELS` (the low budget) and a `datasets` cache of its
    own. Each run adds its own `MEDRES_TOKEN_LOG`.
    """
    env = {k: v for k, v in base.items() if k not in POLICY_ENV and k != Env.TOKEN_LOG}
    env.update(OFFLINE_ENV)
    home = Path(data_home_dir)
    env[Env.DATA_HOME] = str(home)
    root = dataset_root(config.data, home)
    env[Env.LOCAL_SOURCES] = str(root)
    # `datasets` caches a local folder under its base name and card, not its path: every parameter
    # set's folder is called `probe`, so each gets its own cache or one would be read for another.
    env['HF_DATASETS_CACHE'] = str(root / '.cache' / 'hf-datasets')
    env[Env.LOW_PIXELS] = str(config.low_pixels)
    if config.mix_ratio != PAPER_MIX_RATIO:
        env[Env.MIX_RATIO] = str(config.mix_ratio)
    env.setdefault('TOKENIZERS_PARALLELISM', 'false')
    env.setdefault('PYTHONUNBUFFERED', '1')
    return env


# ------------------------------------------------------------------------------ training

def train_recipe(resolution: str) -> Path:
    if resolution not in TRAIN_RESOLUTIONS:
        raise ValueError(f'training resolution must be one of {TRAIN_RESOLUTIONS}, got {resolution!r}')
    return RECIPES_DIR / 'train' / f'{RECIPE_MODEL}-{resolution}.yaml'


def train_overrides(config: ProbeConfig, model_dir: Path, output_dir: Path) -> list[str]:
    """`swift sft` flags after `--`: only what a CPU and a random-init toy need differs from the recipe."""
    t = config.train
    return [
        '--model', str(model_dir), '--model_type', 'qwen2_vl', '--template', 'qwen2_vl',
        '--deepspeed', '', '--torch_dtype', 'float32',
        '--dataset', f'medres/{ENTRY_NAME}:train',
        '--max_steps', str(t.max_steps), '--learning_rate', str(t.learning_rate),
        '--warmup_ratio', str(t.warmup_ratio), '--weight_decay', str(t.weight_decay),
        '--lr_scheduler_type', t.lr_scheduler_type, '--seed', str(t.seed), '--data_seed', str(t.seed),
        '--save_strategy', 'steps', '--save_steps', str(t.max_steps), '--save_only_model', 'true',
        '--gradient_checkpointing', 'false', '--dataloader_num_workers', '0', '--dataset_num_proc', '1',
        '--report_to', 'none', '--logging_steps', '10',
        # ms-swift computes logits from the earliest answer token in the batch on: right padding puts
        # the low rows' answers 48 tokens before the native rows' in a mixed batch, and the tiny
        # model's 152k-word output layer over those positions made the mixed arm 5x slower.
        '--padding_side', 'left',
        '--output_dir', str(output_dir), '--add_version', 'false', '--check_model', 'false',
    ]


def train_command(config: ProbeConfig, resolution: str, model_dir: Path, output_dir: Path) -> list[str]:
    """`medres train <recipe> --global-batch B --micro-batch B -- <overrides>` for one arm."""
    b = config.train.batch_size
    medres = [sys.executable, '-m', 'swift_plugins.cli.main']
    return [*medres, 'train', str(train_recipe(resolution)), '--global-batch', str(b), '--micro-batch', str(b),
            '--', *train_overrides(config, model_dir, output_dir)]


@dataclass
class ArmRun:
    resolution: str
    checkpoint: Path
    output_dir: Path
    log: Path
    token_log: Path
    seconds: float
    losses: list[float] = field(default_factory=list)


def _losses(output_dir: Path) -> list[float]:
    path = output_dir / 'logging.jsonl'
    if not path.is_file():
        return []
    return [float(r['loss']) for r in map(json.loads, path.read_text().splitlines()) if 'loss' in r]


def logged_step(output_dir: Path) -> int:
    """The last global step ms-swift logged under `output_dir` (0 before the first log line)."""
    path = output_dir / 'logging.jsonl'
    if not path.is_file():
        return 0
    for line in reversed(path.read_text().splitlines()):
        done = json.loads(line).get('global_step/max_steps', '') if line.strip() else ''
        if done:
            return int(str(done).split('/')[0])
    return 0


def train_arm(config: ProbeConfig, resolution: str, workdir: Path, *, env: Mapping[str, str],
              model_dir: Optional[Path] = None, on_step: Callable[[int], None] = lambda step: None) -> ArmRun:
    """Train one arm (reusing a finished run of the same configuration); returns its checkpoint and
    logs. `on_step(step)` is called with the last logged training step while it runs."""
    workdir = Path(workdir).resolve()
    model_dir = model_dir or build_probe_model(config, workdir)
    out = workdir / 'arms' / resolution
    marker = out / 'probe_arm.json'
    if marker.is_file():
        done = json.loads(marker.read_text())
        if done.get('config') == config.key() and Path(done['checkpoint']).is_dir():
            return ArmRun(resolution, Path(done['checkpoint']), out / 'train', out / 'sft.log',
                          out / 'train_tokens.jsonl', done['seconds'], done.get('losses', []))
    token_log = out / 'train_tokens.jsonl'
    if token_log.exists():
        token_log.unlink()   # the template appends
    run_env = {**env, Env.TOKEN_LOG: str(token_log)}
    cmd = train_command(config, resolution, model_dir, out / 'train')
    seconds = run_logged(cmd, log_path=out / 'sft.log', env=run_env, name=f'medres train ({resolution} arm)',
                         cwd=RECIPES_DIR.parent, poll=lambda: on_step(logged_step(out / 'train')))
    ckpt = last_checkpoint(out / 'train')
    losses = _losses(out / 'train')
    marker.write_text(json.dumps({'config': config.key(), 'checkpoint': str(ckpt), 'seconds': seconds,
                                  'losses': losses}, indent=1))
    return ArmRun(resolution, ckpt, out / 'train', out / 'sft.log', token_log, seconds, losses)


# ------------------------------------------------------------------------------ inference

def infer_overrides(config: ProbeConfig) -> list[str]:
    """`swift infer` flags every grid cell adds to `recipes/infer/<resolution>.yaml`: the tiny
    model's type and dtype, a short answer budget (a label is one or two tokens)."""
    return ['--model_type', 'qwen2_vl', '--template', 'qwen2_vl', '--torch_dtype', 'float32',
            '--max_new_tokens', str(config.max_new_tokens), '--max_batch_size', str(config.infer_batch)]
