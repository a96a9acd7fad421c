"""The four checkpoints the recipes name, as data: their published configuration, without weights.

`train/checkpoints/<name>.json` holds, per checkpoint, the values of its hub files that matter for
resolution and training (`config.json`, `preprocessor_config.json`, `processor_config.json`, the
tokenizer's added tokens), each file's source, a published parameter total to check the meta-device
graph against, and what could not be verified offline (`uncertain`). Everything else is derived here
from those values: the family's unit sizes, tokens per tile or crop, the towers' sizes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..errors import UsageError
from ..resolution.families import Family, InternVL, LlavaOneVision, Qwen2VL

CHECKPOINTS_DIR = Path(__file__).resolve().parent / 'checkpoints'


@dataclass(frozen=True)
class Tower:
    """One transformer stack: what the memory plan needs of it."""
    name: str
    hidden_size: int
    layers: int
    heads: int
    intermediate_size: int
    kv_heads: Optional[int] = None


@dataclass(frozen=True)
class Checkpoint:
    name: str                       # the recipes' model key, e.g. qwen2-vl-2b
    model: str                      # hub id, e.g. Qwen/Qwen2-VL-2B-Instruct
    model_type: str                 # ms-swift model_type
    template: str                   # ms-swift template type
    family_name: str
    files: dict[str, Any]           # published file name -> its values
    tokenizer: dict[str, Any]
    sources: dict[str, str]
    checks: dict[str, Any]
    uncertain: tuple[str, ...] = field(default_factory=tuple)

    @property
    def config(self) -> dict:
        return self.files['config.json']

    def token_id(self, token: str) -> int:
        ids = [int(i) for i, t in self.tokenizer['added_tokens'].items() if t == token]
        if not ids:
            raise KeyError(f'{self.model}: no added token {token!r}')
        return ids[0]

    # --- the family's unit, from the configuration -------------------------------------------

    def family(self) -> Family:
        """The resolution family with the unit sizes this checkpoint's files give."""
        cfg = self.config
        if self.family_name == 'qwen2_vl':
            pre = self.files['preprocessor_config.json']
            return Qwen2VL(patch_size=pre['patch_size'], merge_size=pre['merge_size'])
        if self.family_name == 'internvl':
            tile = cfg['force_image_size'] or cfg['vision_config']['image_size']
            patch = cfg['vision_config']['patch_size']
            # The remote-code InternVL2.5 template's tile cap is `max_dynamic_patch` under vLLM.
            knob = 'max_dynamic_patch' if self.model_type == 'internvl_chat' else 'max_patches'
            return InternVL(tile=tile, tokens_per_tile=int((tile // patch) ** 2 * cfg['downsample_ratio'] ** 2),
                            engine_knob=knob)
        if self.family_name == 'llava_onevision':
            vis, proc = cfg['vision_config'], self.files['processor_config.json']
            side = vis['image_size'] // vis['patch_size']
            if side * side != proc['num_image_tokens']:
                raise ValueError(f'{self.model}: num_image_tokens {proc["num_image_tokens"]} is not {side}x{side}')
            return LlavaOneVision(crop=vis['image_size'], tokens_per_side=side,
                                  max_num_patches=int(cfg['vision_aspect_ratio'].removeprefix('anyres_max_')),
                                  pinpoints=[list(p) for p in cfg['image_grid_pinpoints']])
        raise ValueError(f'{self.model}: unknown family {self.family_name!r}')

    def image_token(self) -> str:
        return type(self.family()).image_token

    # --- towers (for the memory plan) ----------------------------------------------------------

    def towers(self) -> dict[str, Tower]:
        cfg = self.config
        if self.family_name == 'qwen2_vl':
            v = cfg['vision_config']
            return {'vision': Tower('vision', v['embed_dim'], v['depth'], v['num_heads'], v['embed_dim'] * v['mlp_ratio']),
                    'language': Tower('language', cfg['hidden_size'], cfg['num_hidden_layers'], cfg['num_attention_heads'],
                                      cfg['intermediate_size'], cfg['num_key_value_heads'])}
        if self.family_name == 'internvl':
            v, t = cfg['vision_config'], cfg['llm_config']
        else:
            v, t = cfg['vision_config'], cfg['text_config']
        return {'vision': Tower('vision', v['hidden_size'], v['num_hidden_layers'], v['num_attention_heads'],
                                v['intermediate_size']),
                'language': Tower('language', t['hidden_size'], t['num_hidden_layers'], t['num_attention_heads'],
                                  t['intermediate_size'], t['num_key_value_heads'])}

    @property
    def vocab_size(self) -> int:
        cfg = self.config
        return (cfg.get('llm_config') or cfg.get('text_config') or cfg)['vocab_size']

    @property
    def tied_embeddings(self) -> bool:
        cfg = self.config
        text = cfg.get('llm_config') or cfg.get('text_config') or cfg
        return bool(text.get('tie_word_embeddings', cfg.get('tie_word_embeddings', False)))


@lru_cache(maxsize=None)
def _all() -> dict[str, Checkpoint]:
    out = {}
    for path in sorted(CHECKPOINTS_DIR.glob('*.json')):
        d = json.loads(path.read_text())
        files = {k: v for k, v in d.items() if k.endswith('.json')}
        ck = Checkpoint(name=d['name'], model=d['model'], model_type=d['model_type'], template=d['template'],
                        family_name=d['family'], files=files, tokenizer=d['tokenizer'], sources=d['sources'],
                        checks=d.get('checks', {}), uncertain=tuple(d.get('uncertain', ())))
        if path.stem != ck.name:
            raise ValueError(f'{path}: name {ck.name!r} does not match the file name')
        out[ck.name] = ck
    return out


def checkpoints() -> list[Checkpoint]:
    return list(_all().values())


def get_checkpoint(key: str) -> Checkpoint:
    """A checkpoint by its recipe model key (`qwen2-vl-2b`) or its hub id (`Qwen/Qwen2-VL-2B-Instruct`)."""
    for ck in _all().values():
        if key in (ck.name, ck.model):
            return ck
    raise UsageError(f'no configuration shipped for {key!r}; known: '
                     f'{", ".join(f"{c.name} ({c.model})" for c in _all().values())}')


def find_checkpoint(model: str, model_type: Optional[str] = None) -> Optional[Checkpoint]:
    """The shipped checkpoint a recipe's `model` names (hub id, or a local folder named after it), or None."""
    for ck in _all().values():
        if model == ck.model or Path(model).name == ck.model.split('/')[-1]:
            if model_type in (None, ck.model_type):
                return ck
    return None
