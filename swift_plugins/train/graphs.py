"""Real-size model graphs without weights: the checkpoint's architecture on the meta device.

`meta_model(checkpoint)` builds the model from its published configuration with no memory behind
the parameters (transformers' own classes for Qwen2-VL and LLaVA-OneVision; for InternVL2.5, whose
classes are remote code on the hub, a module tree with the remote code's names and shapes:
`vision_model` (InternViT: `embeddings`, `encoder.layers.N.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2,
norm1, norm2, ls1, ls2}`), `mlp1` (LayerNorm, Linear, GELU, Linear) and `language_model`
(InternLM2: `model.tok_embeddings`, `model.layers.N.{attention.wqkv, attention.wo,
feed_forward.w1/w2/w3, attention_norm, ffn_norm}`, `model.norm`, `output`)).

`trainable(checkpoint, tuning)` counts what a recipe trains, per tower, using ms-swift's own
rules: full finetuning with `freeze_vit/freeze_aligner/freeze_llm` false trains every parameter;
LoRA `all-linear` puts adapters on the Linear modules ms-swift's `get_multimodal_target_regex`
selects in the language model, vision encoder and projector (rank r adds r x (in + out) each).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .checkpoint import Checkpoint, get_checkpoint

TOWERS = ('vision', 'projector', 'language', 'other')


def _internvl_chat(cfg: dict):
    """InternVLChatModel's module tree (names and shapes of the hub's remote code), no forward."""
    import torch
    from torch import nn

    v, t = cfg['vision_config'], cfg['llm_config']
    d, heads = v['hidden_size'], v['num_attention_heads']
    n_pos = (v['image_size'] // v['patch_size']) ** 2 + 1
    vision = nn.Module()
    vision.embeddings = nn.Module()
    vision.embeddings.class_embedding = nn.Parameter(torch.empty(1, 1, d))
    vision.embeddings.patch_embedding = nn.Conv2d(v.get('num_channels', 3), d, v['patch_size'], v['patch_size'])
    vision.embeddings.position_embedding = nn.Parameter(torch.empty(1, n_pos, d))
    norm = nn.LayerNorm if v['norm_type'] == 'layer_norm' else nn.RMSNorm
    layers = []
    for _ in range(v['num_hidden_layers']):
        layer = nn.Module()
        layer.attn = nn.Module()
        layer.attn.qkv = nn.Linear(d, 3 * d, bias=v['qkv_bias'])
        layer.attn.proj = nn.Linear(d, d)
        if v.get('qk_normalization'):
            layer.attn.q_norm, layer.attn.k_norm = norm(d), norm(d)
        layer.mlp = nn.Module()
        layer.mlp.fc1 = nn.Linear(d, v['intermediate_size'])
        layer.mlp.fc2 = nn.Linear(v['intermediate_size'], d)
        layer.norm1, layer.norm2 = norm(d), norm(d)
        layer.ls1, layer.ls2 = nn.Parameter(torch.empty(d)), nn.Parameter(torch.empty(d))
        layers.append(layer)
    vision.encoder = nn.Module()
    vision.encoder.layers = nn.ModuleList(layers)
    assert heads and d % heads == 0

    h, inter = t['hidden_size'], t['intermediate_size']
    head_dim = h // t['num_attention_heads']
    qkv_out = (t['num_attention_heads'] + 2 * t['num_key_value_heads']) * head_dim
    lm = nn.Module()
    lm.model = nn.Module()
    lm.model.tok_embeddings = nn.Embedding(t['vocab_size'], h)
    blocks = []
    for _ in range(t['num_hidden_layers']):
        b = nn.Module()
        b.attention = nn.Module()
        b.attention.wqkv = nn.Linear(h, qkv_out, bias=t.get('bias', False))
        b.attention.wo = nn.Linear(t['num_attention_heads'] * head_dim, h, bias=t.get('bias', False))
        b.feed_forward = nn.Module()
        b.feed_forward.w1 = nn.Linear(h, inter, bias=False)
        b.feed_forward.w3 = nn.Linear(h, inter, bias=False)
        b.feed_forward.w2 = nn.Linear(inter, h, bias=False)
        b.attention_norm, b.ffn_norm = nn.RMSNorm(h), nn.RMSNorm(h)
        blocks.append(b)
    lm.model.layers = nn.ModuleList(blocks)
    lm.model.norm = nn.RMSNorm(h)
    lm.output = nn.Linear(h, t['vocab_size'], bias=False)
    if t.get('tie_word_embeddings'):
        lm.output.weight = lm.model.tok_embeddings.weight

    class InternVLChatModel(nn.Module):
        """The root's name, `config` and generation hook, as peft's causal-LM wrapper expects of a model."""

        def prepare_inputs_for_generation(self, *args, **kwargs):
            raise NotImplementedError('a meta-device graph does not generate')

    from transformers import PretrainedConfig

    shuffle = int(1 / cfg['downsample_ratio']) ** 2
    model = InternVLChatModel()
    model.config = PretrainedConfig(**{k: v for k, v in cfg.items() if k not in ('vision_config', 'llm_config')})
    model.vision_model = vision
    model.mlp1 = nn.Sequential(nn.LayerNorm(d * shuffle), nn.Linear(d * shuffle, h), nn.GELU(), nn.Linear(h, h))
    model.language_model = lm
    return model


def meta_model(ck: Checkpoint):
    """`ck`'s architecture at full size on the meta device (no weights, no memory), with ms-swift's
    `model_meta` attached so ms-swift's tuner functions accept it."""
    import torch
    from swift.model import MODEL_MAPPING

    with torch.device('meta'):
        if ck.model_type == 'internvl_chat':
            model = _internvl_chat(ck.config)
        else:
            import transformers
            cfg = dict(ck.config)
            config = transformers.AutoConfig.for_model(cfg.pop('model_type'), **cfg)
            cls = getattr(transformers, ck.config['architectures'][0])
            model = cls._from_config(config)
    model.model_meta = MODEL_MAPPING[ck.model_type]
    return model


def _prefix_match(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + '.') for p in prefixes)


def tower_of(model, name: str) -> str:
    """Which tower a parameter or module name belongs to, by ms-swift's model_arch prefixes."""
    arch = model.model_meta.model_arch
    if _prefix_match(name, arch.aligner):          # before vision: Qwen2-VL's merger sits inside `visual`
        return 'projector'
    if _prefix_match(name, arch.vision_tower):
        return 'vision'
    if _prefix_match(name, arch.language_model):
        return 'language'
    return 'other'


def lora_target_regex(model) -> str:
    """ms-swift's own `all-linear` for a multimodal model with vit, aligner and llm all unfrozen."""
    from swift.utils import get_multimodal_target_regex
    return get_multimodal_target_regex(model, freeze_llm=False, freeze_vit=False, freeze_aligner=False)


@dataclass
class Counts:
    """Parameters of a model and what one recipe trains, per tower."""
    total: dict[str, int] = field(default_factory=dict)
    trainable: dict[str, int] = field(default_factory=dict)
    lora_modules: dict[str, list[str]] = field(default_factory=dict)   # tower -> module names with adapters

    @property
    def total_params(self) -> int:
        return sum(self.total.values())

    @property
    def trainable_params(self) -> int:
        return sum(self.trainable.values())


def parameter_counts(model) -> dict[str, int]:
    out = dict.fromkeys(TOWERS, 0)
    for name, p in model.named_parameters():         # tied weights are listed once
        out[tower_of(model, name)] += p.numel()
    return out


def _module_kinds(names: list[str]) -> list[str]:
    """`model.layers.3.self_attn.q_proj` -> `self_attn.q_proj` (the part after the last layer index);
    a name without one (`mlp1.1`, `model.visual.merger.mlp.0`) stays whole: the distinct kinds LoRA targets."""
    kinds = set()
    for n in names:
        inner = re.split(r'\.\d+\.', n)
        kinds.add(inner[-1] if len(inner) > 1 else n)
    return sorted(kinds)


@lru_cache(maxsize=None)
def counts(name: str, tuning: str, lora_rank: int = 8) -> Counts:
    """Per-tower totals and trainable parameters of `tuning` ('full' or 'lora') for checkpoint `name`."""
    from torch import nn

    ck = get_checkpoint(name)
    model = meta_model(ck)
    c = Counts(total=parameter_counts(model))
    if tuning == 'full':
        c.trainable = dict(c.total)
        return c
    if tuning != 'lora':
        raise ValueError(f'unknown tuning {tuning!r}')
    pattern = re.compile(lora_target_regex(model))
    c.trainable = dict.fromkeys(TOWERS, 0)
    c.lora_modules = {t: [] for t in TOWERS}
    for mname, module in model.named_modules():
        if isinstance(module, nn.Linear) and pattern.fullmatch(mname):
            tower = tower_of(model, mname)
            c.trainable[tower] += lora_rank * (module.in_features + module.out_features)
            c.lora_modules[tower].append(mname)
    return c


def lora_summary(c: Counts) -> dict[str, Any]:
    """Per tower: how many Linear modules get adapters and which kinds."""
    return {t: {'modules': len(names), 'kinds': _module_kinds(names)} for t, names in c.lora_modules.items() if names}
