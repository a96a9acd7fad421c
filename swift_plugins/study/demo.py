"""The embedded default: a study of a tiny random-init Qwen2-VL on the synthetic probe dataset.

Everything is built here (the model, the images), nothing is downloaded, and every step is the one
a real study takes: the arms train through `recipes/train/qwen2-vl-2b-full-<resolution>.yaml` with
`medres train`, the cells run stock `swift infer`, the report is the same. The sizes are the probe's
presets (`swift_plugins.probe.config`): `quick` checks the pipeline, `demo` (`medres demo`) shows the
paper's effect in a few minutes, `default` (`medres probe`) its whole pattern.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from rich.console import Console

from ..probe.config import (
    ProbeConfig,
    build_probe_model,
    infer_overrides,
    prepare_probe,
    probe_env,
    probe_policy,
    probe_settings,
    train_overrides,
)
from ..probe.generator import ENTRY_NAME
from ..settings import Settings
from .model import resolve_model
from .run import StudyConfig

console = Console()


def probe_folder(config: ProbeConfig, workdir: Path) -> Path:
    """One folder per probe configuration: another size or seed never reuses an arm trained on other data."""
    return Path(workdir).resolve() / f'{config.size}-seed{config.seed}-{config.key()}'


def probe_study(config: ProbeConfig, workdir: Path, *, settings: Settings, base_env: Mapping[str, str],
                **options) -> StudyConfig:
    """The study of `config`'s tiny model on its probe dataset (written here unless already there)."""
    folder = probe_folder(config, workdir)
    console.print(config.describe(), highlight=False)
    with console.status(f'writing the probe images ({config.data.n_train} train, {config.data.n_test} test)'):
        prepare_probe(config, settings.data_home)
    with console.status('building the tiny random-init model'):
        model_dir = build_probe_model(config, folder)
    size = config.data.size
    options.setdefault('n_boot', 2000)
    return StudyConfig(
        folder, resolve_model(str(model_dir)), [ENTRY_NAME],
        train_args=tuple(train_overrides(config)), infer_args=tuple(infer_overrides(config)),
        policy_overrides=probe_policy(config), env_extra=probe_env(config, settings.data_home),
        settings=probe_settings(config, settings), base_env=base_env,
        global_batch=config.train.batch_size, micro_batch=config.train.batch_size,
        bootstrap_seed=config.seed, probe=config,
        # Budgets for the zero-shot sweep, in the probe's scale: a quarter, the low budget, half, native.
        sweep_budgets=((size // 4) ** 2, config.low_pixels, (size * 3 // 4) ** 2), sweep_split='test',
        title=f'medres study: the resolution probe ({config.size}, seed {config.seed})', **options)
