"""The probe's configuration: its data, its tiny model, how its arms train, its presets.

The probe is `medres study` on the `medres/probe` dataset with a tiny random-init Qwen2-VL: each
arm is `recipes/train/qwen2-vl-2b-full-<resolution>.yaml` launched by `medres train` with only what a
CPU and a toy require overridden after `--` (`train_overrides`: fp32, no DeepSpeed, the probe's
steps / learning rate / batch); the resolution comes from the recipe's own `ENV:` section. The
policy settings the probe changes (the low budget, where the dataset lives) travel in environment
variables (`probe_env`), as everywhere in medres; `infer_overrides` are the flags its grid cells add.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..fixtures.tiny_qwen2_vl import TinyQwen2VLSpec, build_tiny_qwen2_vl
from ..settings import Settings
from ..vocabulary import OFFLINE_ENV, PAPER_MIX_RATIO, Env
from .generator import ENTRY_NAME, ProbeDataSpec, dataset_root, write_probe

# The recipe family the arms run: Qwen2-VL-2B full finetuning, with the model swapped for a tiny one.
RECIPE_MODEL = 'qwen2-vl-2b'
RECIPE_TUNING = 'full'
# quick: checks the pipeline (CI); demo: `medres demo`, a few minutes; default: the pattern (`medres probe`).
SIZES = ('quick', 'demo', 'default')


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
    """One probe: data, model, training, the low budget. `preset()` gives the standard sizes."""
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
        elif size == 'demo':
            data = ProbeDataSpec(n_train=400, n_validation=0, n_test=100, seed=seed)
            train = TrainSpec(max_steps=120, seed=42 + seed)
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


def hue_agreement(dataset: Path, split: str) -> dict[str, bool]:
    """Row id -> whether the image's stain hue names its class, from the prepared rows."""
    from ..resolution.mixing import sample_id
    rows = [json.loads(line) for line in (Path(dataset) / 'data' / f'{split}.jsonl').read_text().splitlines()]
    return {sample_id(ENTRY_NAME, split, i): r['stain'] == r['answer'] for i, r in enumerate(rows)}


def probe_policy(config: ProbeConfig) -> dict[str, str]:
    """The policy variables the probe sets over the recipes' (training and inference): the low budget."""
    policy = {Env.LOW_PIXELS: str(config.low_pixels)}
    if config.mix_ratio != PAPER_MIX_RATIO:
        policy[Env.MIX_RATIO] = str(config.mix_ratio)
    return policy


def probe_env(config: ProbeConfig, data_home_dir: Path) -> dict[str, str]:
    """Variables every probe `swift` run gets besides its settings and policy: offline hubs and a
    `datasets` cache of this parameter set's own (`datasets` caches a local folder under its base
    name and card, not its path: every parameter set's folder is called `probe`, so each gets its
    own cache or one would be read for another)."""
    root = dataset_root(config.data, Path(data_home_dir))
    return {**OFFLINE_ENV, 'HF_DATASETS_CACHE': str(root / '.cache' / 'hf-datasets'),
            'TOKENIZERS_PARALLELISM': 'false', 'PYTHONUNBUFFERED': '1'}


# ------------------------------------------------------------------------------ training

def train_overrides(config: ProbeConfig) -> list[str]:
    """`swift sft` flags the study adds after the recipe's for the toy: only what a CPU and a
    random-init model need differs (the study adds the model, dataset and output folder)."""
    t = config.train
    return [
        '--deepspeed', '', '--torch_dtype', 'float32',
        '--max_steps', str(t.max_steps), '--learning_rate', str(t.learning_rate),
        '--warmup_ratio', str(t.warmup_ratio), '--weight_decay', str(t.weight_decay),
        '--lr_scheduler_type', t.lr_scheduler_type, '--seed', str(t.seed), '--data_seed', str(t.seed),
        '--save_strategy', 'steps', '--save_steps', str(t.max_steps), '--save_only_model', 'true',
        '--gradient_checkpointing', 'false', '--dataloader_num_workers', '0', '--dataset_num_proc', '1',
        '--report_to', 'none', '--logging_steps', str(min(10, t.max_steps)),
        # ms-swift computes logits from the earliest answer token in the batch on: right padding puts
        # the low rows' answers 48 tokens before the native rows' in a mixed batch, and the tiny
        # model's 152k-word output layer over those positions made the mixed arm 5x slower.
        '--padding_side', 'left', '--check_model', 'false',
    ]


# ------------------------------------------------------------------------------ inference

def infer_overrides(config: ProbeConfig) -> list[str]:
    """`swift infer` flags every grid cell adds to `recipes/infer/<resolution>.yaml`: the tiny
    model's dtype, a short answer budget (a label is one or two tokens), a larger batch."""
    return ['--torch_dtype', 'float32', '--max_new_tokens', str(config.max_new_tokens),
            '--max_batch_size', str(config.infer_batch)]
