"""What a study will cost, stated before any work starts (`medres study --plan`).

Per dataset and training arm: training samples, optimizer steps at the global batch, visual tokens
per epoch (every image's size from its header, each sample's decision drawn as the run draws it)
and training compute in FLOPs from the model's configuration:

    C = 6 N T  +  12 L d S

N: parameters a visual token passes through (the language model's layers, without the embedding
and output layers, plus the vision encoder's, weighted by its patches per token), T: visual tokens
trained on, L x d: layers x width, S: the sum over the sequences the layers attend (an image's
visual tokens in the language model; each image, or each tile, in the vision encoder) of their
squared length. The first term is the usual 2 FLOPs per parameter per token forward and 4 backward;
the second is the attention's (QK^T and AV, 4 s^2 d forward per layer, x3 for training), which
dominates for long native-resolution sequences. Text tokens (tens per sample) are left out. GPU
hours only from a throughput the user measured (`--tokens-per-second`), never from a constant.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Mapping, Optional, Sequence

import yaml

from ..data.registry import Entry
from ..resolution.families import Family
from ..resolution.mixing import QuotaBook, sample_id
from ..resolution.policy import ResolutionPolicy

VISION_KEYS = ('visual', 'vision_tower', 'vision_model', 'multi_modal_projector', 'mlp1', 'merger')
EMBEDDING_KEYS = ('embed_tokens', 'lm_head', 'wte', 'output.weight')


@dataclass(frozen=True)
class ModelShape:
    """What the FLOPs formula needs from a model's configuration."""
    llm_params: int            # transformer layers of the language model (no embeddings, no output layer)
    llm_layers: int
    llm_width: int
    vision_params: int         # vision encoder and projector
    vision_layers: int
    vision_width: int
    patches_per_token: int     # encoder patches merged into one visual token (Qwen2-VL, InternVL: 4)
    attention_group: Optional[int]   # visual tokens the encoder attends together: None = the whole image
    counted: str               # 'meta-device model' or 'configuration fields'


def _sub(config: dict, *names: str) -> dict:
    for n in names:
        if isinstance(config.get(n), dict):
            return config[n]
    return config


def model_shape(config: dict) -> ModelShape:
    """Parameters by part, counted on a meta-device instance of the model when transformers knows
    its type (exact, no memory), else from the configuration's fields."""
    text = _sub(config, 'text_config', 'llm_config')
    vision = config.get('vision_config') or {}
    kind = config.get('model_type', '')
    merge = int(vision.get('spatial_merge_size') or 0) ** 2 or round(1 / float(config.get('downsample_ratio') or 1) ** 2)
    group = None if kind == 'qwen2_vl' else (256 if kind.startswith('internvl') else 729)
    llm_layers = int(text.get('num_hidden_layers', 0))
    llm_width = int(text.get('hidden_size', 0))
    v_layers = int(vision.get('depth') or vision.get('num_hidden_layers') or 0)
    v_width = int(vision.get('embed_dim') or vision.get('hidden_size') or 0)
    counts = _meta_counts(config)
    how = 'meta-device model'
    if counts is None:
        counts, how = _field_counts(text, vision), 'configuration fields'
    return ModelShape(counts[0], llm_layers, llm_width, counts[1], v_layers, v_width, max(1, merge), group, how)


def _meta_counts(config: dict) -> Optional[tuple[int, int]]:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText
        cfg = AutoConfig.for_model(**config)
        with torch.device('meta'):
            model = AutoModelForImageTextToText.from_config(cfg)
    except Exception:   # remote-code types (internvl_chat): count from the fields instead
        return None
    llm = vision = 0
    for name, p in model.named_parameters():
        if any(k in name for k in EMBEDDING_KEYS):
            continue
        if any(k in name.split('.') for k in VISION_KEYS):
            vision += p.numel()
        else:
            llm += p.numel()
    return llm, vision


def _field_counts(text: dict, vision: dict) -> tuple[int, int]:
    d, layers = int(text.get('hidden_size', 0)), int(text.get('num_hidden_layers', 0))
    heads = int(text.get('num_attention_heads', 1))
    kv = int(text.get('num_key_value_heads', heads))
    ff = int(text.get('intermediate_size', 4 * d))
    llm = layers * (d * d + 2 * d * (d // heads) * kv + d * d + 3 * d * ff + 2 * d)
    vd = int(vision.get('embed_dim') or vision.get('hidden_size') or 0)
    vl = int(vision.get('depth') or vision.get('num_hidden_layers') or 0)
    vff = int(vision.get('intermediate_size') or vd * int(vision.get('mlp_ratio') or 4))
    return llm, vl * (4 * vd * vd + 2 * vd * vff + 4 * vd)


def training_flops(shape: ModelShape, tokens: Sequence[int]) -> float:
    """Forward + backward FLOPs of one pass over samples with these visual tokens each (module doc)."""
    t = float(sum(tokens))
    r = shape.patches_per_token
    # A vision parameter sees each of a token's r patches; weights shared per patch, so r x the tokens.
    dense = 6.0 * (shape.llm_params * t + shape.vision_params * r * t)
    llm_attn = 12.0 * shape.llm_layers * shape.llm_width * float(sum(s * s for s in tokens))
    if shape.attention_group is None:
        groups = float(sum((r * s) ** 2 for s in tokens))
    else:
        g = shape.attention_group
        groups = float(sum(math.ceil(s / g) * (r * g) ** 2 for s in tokens))
    return dense + llm_attn + 12.0 * shape.vision_layers * shape.vision_width * groups


@dataclass
class ArmPlan:
    dataset: str
    arm: str
    recipe: str
    policy: str
    samples: Optional[int]
    sizes_from: str                  # 'image headers', 'registry rows x native size', or why unknown
    epochs: Optional[float]
    steps: Optional[int]
    global_batch: int
    tokens_per_epoch: Optional[int]
    mean_tokens: Optional[float]
    max_tokens: Optional[int]
    flops: Optional[float]
    gpu_hours: Optional[float] = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def recipe_schedule(recipe_text: str, swift_args: Sequence[str]) -> tuple[float, Optional[int]]:
    """(epochs, max_steps) of a training run: the recipe's, overridden by flags after `--`."""
    data = yaml.safe_load(recipe_text) or {}
    epochs, max_steps = float(data.get('num_train_epochs', 3)), data.get('max_steps')
    args = list(swift_args)
    for i, a in enumerate(args[:-1]):
        if a in ('--num_train_epochs', '--num-train-epochs'):
            epochs = float(args[i + 1])
        if a in ('--max_steps', '--max-steps'):
            max_steps = int(args[i + 1])
    return epochs, (int(max_steps) if max_steps not in (None, -1) else None)


def arm_tokens(entry: Entry, split: str, sizes: Sequence[tuple[int, int]], family: Family,
               policy: ResolutionPolicy) -> list[int]:
    """Visual tokens of every sample of one training run's split, drawn as the run draws them."""
    slots = policy.slots(entry.name, entry.modality, split, len(sizes), QuotaBook())
    return [policy.plan(w, h, policy.decide(sample_id(entry.name, split, i), slots[i] if slots else None), family).tokens
            for i, (w, h) in enumerate(sizes)]


def plan_arm(entry: Entry, split: str, arm: str, recipe: str, recipe_text: str, policy: ResolutionPolicy,
             family: Family, sizes: Optional[Sequence[tuple[int, int]]], sizes_from: str, *,
             swift_args: Sequence[str], global_batch: int, shape: Optional[ModelShape],
             tokens_per_second: Optional[float]) -> ArmPlan:
    epochs, max_steps = recipe_schedule(recipe_text, swift_args)
    plan = ArmPlan(entry.name, arm, recipe, policy.describe(), None if sizes is None else len(sizes), sizes_from,
                   epochs, None, global_batch, None, None, None, None)
    if sizes is None:
        plan.notes.append(f'samples unknown: {sizes_from}')
        if max_steps:
            plan.steps, plan.epochs = max_steps, None
        return plan
    n = len(sizes)
    per_epoch = math.ceil(n / global_batch) if n else 0
    if max_steps:
        plan.steps = max_steps
        plan.epochs = max_steps * global_batch / n if n else None
    else:
        plan.steps = math.ceil(per_epoch * epochs)
    tokens = arm_tokens(entry, split, sizes, family, policy)
    plan.tokens_per_epoch, plan.mean_tokens = int(sum(tokens)), (sum(tokens) / n if n else 0.0)
    plan.max_tokens = max(tokens) if tokens else 0
    passes = plan.epochs or 0.0
    if shape is not None:
        plan.flops = training_flops(shape, tokens) * passes
    else:
        plan.notes.append('FLOPs need the model configuration (a local folder, or the shipped configuration)')
    if tokens_per_second:
        plan.gpu_hours = plan.tokens_per_epoch * passes / tokens_per_second / 3600
    return plan


def fmt_flops(x: Optional[float]) -> str:
    if x is None:
        return '-'
    for unit, div in (('EFLOP', 1e18), ('PFLOP', 1e15), ('TFLOP', 1e12), ('GFLOP', 1e9)):
        if x >= div:
            return f'{x / div:.3g} {unit}'
    return f'{x:.3g} FLOP'


def fmt_count(x: Optional[float]) -> str:
    if x is None:
        return '-'
    for unit, div in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(x) >= div:
            return f'{x / div:.3g}{unit}'
    return f'{x:.0f}' if float(x).is_integer() else f'{x:.1f}'


def plan_markdown(plans: Sequence[ArmPlan], shape: Optional[ModelShape], launcher: str) -> str:
    lines = [f'Training: {launcher}.', '']
    if shape is not None:
        lines += [f'Model: {fmt_count(shape.llm_params)} language-model parameters ({shape.llm_layers} layers x '
                  f'{shape.llm_width}), {fmt_count(shape.vision_params)} vision ({shape.vision_layers} x '
                  f'{shape.vision_width}, {shape.patches_per_token} patches per visual token); counted on a '
                  f'{shape.counted}.', '']
    else:
        lines += ['Model configuration not available on this machine: FLOPs are not computed '
                  '(pass --model <local folder>).', '']
    hours = any(p.gpu_hours is not None for p in plans)
    head = ['dataset', 'arm', 'samples', 'epochs', f'steps (batch {plans[0].global_batch if plans else "-"})',
            'visual tokens / epoch', 'mean / max per image', 'training FLOPs'] + (['GPU hours'] if hours else [])
    lines += ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    for p in plans:
        row = [p.dataset, p.arm, fmt_count(p.samples) + ('' if p.sizes_from == 'image headers' or p.samples is None
                                                          else ' (est.)'),
               '-' if p.epochs is None else f'{p.epochs:.3g}', '-' if p.steps is None else f'{p.steps:,}',
               fmt_count(p.tokens_per_epoch),
               '-' if p.mean_tokens is None else f'{p.mean_tokens:,.0f} / {p.max_tokens:,}', fmt_flops(p.flops)]
        if hours:
            row.append('-' if p.gpu_hours is None else f'{p.gpu_hours:,.1f}')
        lines.append('| ' + ' | '.join(row) + ' |')
    notes = sorted({f'{p.dataset}: {n}' for p in plans for n in p.notes} |
                   {f'{p.dataset}: sizes from {p.sizes_from}' for p in plans if p.sizes_from != 'image headers'})
    if notes:
        lines += [''] + [f'- {n}' for n in notes]
    lines += ['', 'FLOPs: C = 6 N T + 12 L d S (N parameters a visual token passes through, T visual tokens '
              'trained on, L x d layers x width, S the sum of squared attended sequence lengths); text tokens '
              'left out.' + ('' if hours else ' GPU hours: pass --tokens-per-second (a throughput you measured).')]
    return '\n'.join(lines) + '\n'


def plan_record(plans: Sequence[ArmPlan], shape: Optional[ModelShape]) -> dict:
    return {'arms': [p.as_dict() for p in plans], 'model_shape': None if shape is None else asdict(shape)}


def policy_for(recipe_env: Mapping[str, str], overrides: Mapping[str, str]) -> ResolutionPolicy:
    policy = ResolutionPolicy.from_env({**recipe_env, **overrides})
    assert policy is not None
    return policy
