"""What `--model` names: a recipe model key (`qwen2-vl-2b`), a hub id, or a local folder.

`resolve_model` gives the training recipe family, the ms-swift model type and template, and the
checkpoint every arm starts from; `model_config` gives the model's configuration (its
`config.json`), which the plan's FLOPs need. For a local folder it is read from the folder; for the
recipe keys it is the published `config.json` shipped as data (`train/checkpoints/<key>.json`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import yaml

from ..errors import UsageError
from ..train.recipes import RECIPES_DIR, model_title

# A checkpoint's `config.json` model_type -> (recipe model key, ms-swift model_type, template).
# InternVL2.5 on the hub is remote code (`internvl_chat`); transformers' native InternVL classes
# (`internvl`) have the same tiles and are what offline tiny models use.
CONFIG_TYPES = {
    'qwen2_vl': ('qwen2-vl-2b', 'qwen2_vl', 'qwen2_vl'),
    'internvl_chat': ('internvl2.5-2b', 'internvl_chat', 'internvl2_5'),
    'internvl': ('internvl2.5-2b', 'internvl', 'internvl_hf'),
    'llava_onevision': ('llava-onevision', 'llava_onevision_hf', 'llava_onevision_hf'),
}


@lru_cache(maxsize=1)
def recipe_models() -> dict[str, dict]:
    """Recipe model key -> {title, model (hub id), model_type, template}, from `recipes/src/models.yaml`."""
    raw = yaml.safe_load((RECIPES_DIR / 'src' / 'models.yaml').read_text())
    return {k: {'title': model_title(v), **v['settings']} for k, v in raw.items()}


@dataclass(frozen=True)
class ModelRef:
    """The model of a study."""
    recipe_key: str          # which `recipes/train/<key>-<tuning>-<resolution>.yaml` its arms run
    model: str               # hub id or absolute folder: the base ('none' arm) every arm starts from
    model_type: str          # ms-swift's
    template: str            # ms-swift's
    local: bool              # a folder on this machine

    @property
    def is_recipe_default(self) -> bool:
        """True when `model` is the recipe's own checkpoint (nothing to override)."""
        return recipe_models()[self.recipe_key]['model'] == self.model

    def swift_args(self) -> list[str]:
        """Flags that point a recipe (or an inference run) at this model."""
        if self.is_recipe_default:
            return []
        return ['--model', self.model, '--model_type', self.model_type, '--template', self.template]


def resolve_model(text: str, recipe_key: Optional[str] = None) -> ModelRef:
    """A recipe key, a hub id of one of the recipes, or a local checkpoint folder; any other hub id
    with `recipe_key` naming the recipe family it belongs to (e.g. the 7B LLaVA-OneVision)."""
    models = recipe_models()
    if recipe_key is not None and recipe_key not in models:
        raise UsageError(f'--recipe-model {recipe_key!r}: one of {", ".join(models)}')
    if recipe_key and not Path(text).expanduser().is_dir() and text not in models:
        m = models[recipe_key]
        return ModelRef(recipe_key, text, m['model_type'], m['template'], local=False)
    if text in models:
        m = models[text]
        return ModelRef(text, m['model'], m['model_type'], m['template'], local=False)
    for key, m in models.items():
        if m['model'].lower() == text.strip().rstrip('/').lower():
            return ModelRef(key, m['model'], m['model_type'], m['template'], local=False)
    folder = Path(text).expanduser()
    if folder.is_dir():
        config = _read_config(folder)
        kind = config.get('model_type')
        if kind not in CONFIG_TYPES:
            raise UsageError(f'{folder / "config.json"}: model_type {kind!r} is not one of the study\'s families '
                             f'({", ".join(sorted(CONFIG_TYPES))})')
        key, model_type, template = CONFIG_TYPES[kind]
        return ModelRef(key, str(folder.resolve()), model_type, template, local=True)
    raise UsageError(f'--model {text!r} is neither a recipe model ({", ".join(models)}), one of their hub ids, '
                     'nor a local checkpoint folder (another hub id: add --recipe-model KEY to name its family)')


def _read_config(folder: Path) -> dict:
    path = folder / 'config.json'
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f'{path}: cannot read the model configuration: {e}') from None


def model_config(key_or_path: str) -> Optional[dict]:
    """The model's `config.json` as a dict: read from a local folder, or the shipped configuration of a
    recipe model key (or its hub id); None where none is available on this machine."""
    folder = Path(key_or_path).expanduser()
    if folder.is_dir():
        return _read_config(folder)
    from ..train.checkpoint import get_checkpoint
    ref = resolve_model(key_or_path)
    return dict(get_checkpoint(ref.recipe_key).config) if ref.is_recipe_default else None
