"""Memory and compute plan of a training recipe on a dataset: estimates, each with its formula.

Inputs: the checkpoint's published configuration (`train.checkpoint`), its real-size parameter
counts per tower (`train.graphs`, meta device), the recipe's tuning and resolution, and the dataset's
image sizes read from headers (as `medres tokens`). Nothing is measured on a GPU; the formulas are
the standard ones and are printed with the numbers, so a user can redo them:

- tokens per sample: visual tokens from the resolution policy (exact, the plan the template checks),
  ViT positions the vision encoder runs over (Qwen2-VL: 4 per token before the 2x2 merge; InternVL:
  1025 per 448 px tile; LLaVA-OneVision: 729 per 384 px crop, base view included, before pooling),
  text tokens counted with the Qwen2 BPE (exact for Qwen2-VL and LLaVA-OneVision, an approximation
  of InternLM2's tokenizer) plus `FRAME_TOKENS` for the chat frame.
- parameters and optimizer (bf16 weights and gradients, fp32 AdamW master copy and two moments,
  P parameters of which T trainable, N GPUs): ZeRO-2 = 2P + (2T + 12T)/N bytes, ZeRO-3 = (2P + 2T + 12T)/N.
- activations per micro-batch of b samples padded to length s (gradient checkpointing on, as in the
  recipes; flash / memory-efficient attention, so no s^2 term): per stack of L layers, hidden h,
  intermediate i, KV width h_kv: checkpoints 2*L*S*h + one layer recomputed 2*S*(6h + 2h_kv + 4i)
  (gated MLP, language model) or 2*S*(8h + 2i) (vision encoder), S = b*s; logits 10*S*V (bf16
  logits, their fp32 copy and the cross-entropy's fp32 log-softmax).
- compute: forward = 2 x matmul parameters x tokens + attention (causal 2*L*h*s^2 in the language
  model, 4*L*h*n^2 per image, tile or crop of n positions in the vision encoder); a training step
  with recompute costs 4 forwards (full) or 3 (LoRA: no weight gradients for the frozen base).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..resolution.families import Family, InternVL, LlavaOneVision, Qwen2VL, Size
from ..resolution.mixing import QuotaBook, sample_id
from ..resolution.policy import ResolutionPolicy
from ..vocabulary import RESOLUTION_MODES
from .checkpoint import Checkpoint
from .graphs import Counts

GIB = 2 ** 30
# Role markers, newlines and image delimiters of one single-turn sample (the templates' frame around
# system prompt, question, image tokens and answer); tests/test_plan.py measures it on the real templates.
FRAME_TOKENS = 18
# CUDA context, NCCL buffers and allocator slack per GPU: an assumption, not a measurement.
OVERHEAD_GIB = 2.0
# bf16 logits + their fp32 copy + the fp32 log-softmax cross-entropy keeps for backward.
LOGIT_BYTES = 10


@dataclass(frozen=True)
class Stats:
    mean: float
    p95: float
    max: int

    @classmethod
    def of(cls, values: Sequence[float]) -> 'Stats':
        arr = np.asarray(values if len(values) else [0], dtype=np.float64)
        return cls(float(arr.mean()), float(np.percentile(arr, 95)), int(arr.max()))


# --- what one image costs each tower ------------------------------------------------------------


def vision_positions(family: Family, size: Size) -> list[int]:
    """Sequence lengths the vision encoder attends over for one image at `size` (one entry per
    separately attended piece: the image, each tile, each crop)."""
    if isinstance(family, Qwen2VL):
        return [(size[0] // family.patch_size) * (size[1] // family.patch_size)]
    if isinstance(family, InternVL):
        per_tile = (family.tile // 14) ** 2 + 1          # 32x32 patches + the class token
        return [per_tile] * family.num_tiles(size)
    if isinstance(family, LlavaOneVision):
        ph, pw = family.best_resolution(*size)
        crops = (ph // family.crop) * (pw // family.crop)
        return [family.tokens_per_side ** 2] * (1 + crops)   # base view + grid crops, before pooling
    raise TypeError(f'no vision-encoder model for {type(family).__name__}')


@dataclass
class Load:
    """Per-sample sequence lengths of one resolution mode over a dataset."""
    mode: str
    samples: int
    low: int
    visual: Stats                   # visual tokens in the language model
    text: Stats
    sequence: Stats                 # language-model sequence: visual + text
    vit: Stats                      # vision-encoder positions
    vit_attention: float            # mean of sum(n^2) over attended pieces, for the attention FLOPs
    over_max_length: int            # samples a recipe's max_length would stop (strict) or drop


def dataset_load(ck: Checkpoint, splits, texts: Sequence[int], policy: ResolutionPolicy,
                 max_length: Optional[int] = None) -> Load:
    """`splits`: `SplitSizes` in load order (mixed draws are the run's); `texts`: text tokens per sample."""
    family = ck.family()
    book = QuotaBook()
    visual, vit, vit2, low = [], [], [], 0
    for sp in splits:
        slots = policy.slots(sp.dataset, sp.modality, sp.split, len(sp.sizes), book)
        for i, (w, h) in enumerate(sp.sizes):
            decision = policy.decide(sample_id(sp.dataset, sp.split, i), slots[i] if slots else None)
            low += decision == 'low'
            plan = policy.plan(w, h, decision, family)
            pieces = vision_positions(family, plan.size)
            visual.append(plan.tokens)
            vit.append(sum(pieces))
            vit2.append(sum(n * n for n in pieces))
    if len(texts) != len(visual):
        raise ValueError(f'{len(texts)} text lengths for {len(visual)} images')
    seq = [v + t for v, t in zip(visual, texts)]
    over = sum(s > max_length for s in seq) if max_length else 0
    return Load(policy.mode, len(visual), low, Stats.of(visual), Stats.of(texts), Stats.of(seq), Stats.of(vit),
                float(np.mean(vit2)) if vit2 else 0.0, over)


# --- memory --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaticMemory:
    """Bytes per GPU that do not depend on the batch."""
    weights: float
    gradients: float
    optimizer: float
    overhead: float = OVERHEAD_GIB * GIB

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.overhead


def static_memory(total_params: int, trainable_params: int, gpus: int, zero: int) -> StaticMemory:
    """bf16 weights (2P) and gradients (2T), fp32 AdamW state (12T: master copy, m, v); ZeRO-2
    shards gradients and optimizer state over the N GPUs, ZeRO-3 the weights too."""
    if zero not in (2, 3):
        raise ValueError(f'ZeRO stage {zero}: the plan knows 2 and 3')
    p, t, n = total_params, trainable_params, gpus
    return StaticMemory(weights=2 * p / (n if zero == 3 else 1), gradients=2 * t / n, optimizer=12 * t / n)


def _language_bytes(ck: Checkpoint, tokens: float) -> float:
    t = ck.towers()['language']
    head_dim = t.hidden_size // t.heads
    h_kv = (t.kv_heads or t.heads) * head_dim
    checkpoints = 2 * t.layers * tokens * t.hidden_size
    one_layer = 2 * tokens * (6 * t.hidden_size + 2 * h_kv + 4 * t.intermediate_size)
    return checkpoints + one_layer + LOGIT_BYTES * tokens * ck.vocab_size


def _vision_bytes(ck: Checkpoint, positions: float) -> float:
    v = ck.towers()['vision']
    return 2 * v.layers * positions * v.hidden_size + 2 * positions * (8 * v.hidden_size + 2 * v.intermediate_size)


def activation_memory(ck: Checkpoint, micro_batch: int, sequence: float, vit_positions: float) -> float:
    """Bytes for a micro-batch of `micro_batch` samples padded to `sequence` language-model tokens,
    whose images take `vit_positions` vision-encoder positions each."""
    return _language_bytes(ck, micro_batch * sequence) + _vision_bytes(ck, micro_batch * vit_positions)


def largest_micro_batch(ck: Checkpoint, static: StaticMemory, gpu_bytes: float, sequence: float,
                        vit_positions: float, limit: int = 256) -> int:
    """The largest b whose worst case (every sample as long as `sequence`) fits; 0 if none does."""
    best = 0
    for b in range(1, limit + 1):
        if static.total + activation_memory(ck, b, sequence, vit_positions) > gpu_bytes:
            break
        best = b
    return best


# --- compute -------------------------------------------------------------------------------------


def forward_flops(ck: Checkpoint, counts: Counts, load: Load) -> float:
    """Mean forward FLOPs of one sample: 2 x matmul weights x tokens + attention."""
    lang, vis = ck.towers()['language'], ck.towers()['vision']
    embedding = ck.vocab_size * lang.hidden_size
    # Language matmuls: its parameters without the input embedding (a lookup), plus the head when tied.
    lm_matmul = counts.total['language'] - embedding + (embedding if ck.tied_embeddings else 0)
    s = load.sequence
    seq_sq = s.mean ** 2                                      # a lower bound of E[s^2]; fine for a plan
    lm = 2 * lm_matmul * s.mean + 2 * lang.layers * lang.hidden_size * seq_sq
    vit = 2 * (counts.total['vision'] + counts.total['projector']) * load.vit.mean + \
        4 * vis.layers * vis.hidden_size * load.vit_attention
    return lm + vit


def training_flops_per_sample(ck: Checkpoint, counts: Counts, load: Load, tuning: str) -> float:
    return (4 if tuning == 'full' else 3) * forward_flops(ck, counts, load)


# --- the plan as text ----------------------------------------------------------------------------


@dataclass
class RecipePlan:
    ck: Checkpoint
    tuning: str
    counts: Counts
    gpus: int
    zero: int
    gpu_memory_gib: float
    micro_batch: int
    resolution: str
    loads: dict[str, Load] = field(default_factory=dict)
    max_length: Optional[int] = None
    data_note: Optional[str] = None
    gpu_tflops: float = 125.0

    def static(self, zero: Optional[int] = None) -> StaticMemory:
        return static_memory(self.counts.total_params, self.counts.trainable_params, self.gpus, zero or self.zero)

    def lines(self) -> list[str]:
        ck, c = self.ck, self.counts
        gib = lambda b: f'{b / GIB:.1f} GiB'   # noqa: E731
        towers = ', '.join(f'{t} {_human(c.total[t])}' for t in ('vision', 'projector', 'language') if c.total[t])
        trainable = ', '.join(f'{t} {_human(c.trainable[t])}' for t in ('vision', 'projector', 'language')
                              if c.trainable[t])
        out = [f'plan for {ck.model} ({ck.model_type} / {ck.template}), {self.tuning}, ZeRO-{self.zero}, '
               f'{self.gpus} GPU(s) of {self.gpu_memory_gib:g} GiB (estimates; formulas in README "The four checkpoints")',
               f'  parameters {_human(c.total_params)} ({towers}); trainable {_human(c.trainable_params)} '
               f'({100 * c.trainable_params / c.total_params:.2f}%: {trainable})']
        st = self.static()
        p_t = f'P={_human(c.total_params)}, T={_human(c.trainable_params)}, N={self.gpus}'
        w = '2P/N' if self.zero == 3 else '2P'
        out.append(f'  per GPU, static: weights {gib(st.weights)} ({w}) + gradients {gib(st.gradients)} (2T/N) + '
                   f'AdamW {gib(st.optimizer)} (12T/N) + overhead {gib(st.overhead)} = {gib(st.total)} [{p_t}]')
        other = 3 if self.zero == 2 else 2
        out.append(f'  (ZeRO-{other}: {gib(self.static(other).total)})')
        if self.data_note:
            out.append(f'  {self.data_note}')
        if not self.loads:
            return out
        out.append('  per sample      visual tokens (mean/p95/max)   text     ViT positions max   '
                   f'activations at max, b=1   micro-batch fitting {self.gpu_memory_gib:g} GiB: ZeRO-2 / ZeRO-3')
        for mode in RESOLUTION_MODES:
            load = self.loads.get(mode)
            if load is None:
                continue
            act = activation_memory(ck, 1, load.sequence.max, load.vit.max)
            fits = [largest_micro_batch(ck, self.static(z), self.gpu_memory_gib * GIB, load.sequence.max, load.vit.max)
                    for z in (2, 3)]
            mark = '*' if mode == self.resolution else ' '
            out.append(f'  {mark}{mode:<7} {load.visual.mean:>10,.0f} / {load.visual.p95:>6,.0f} / {load.visual.max:>6,}'
                       f'   {load.text.mean:>5,.0f}   {load.vit.max:>12,}   {gib(act):>18}   {fits[0]:>17} / {fits[1]}')
        load = self.loads.get(self.resolution)
        if load is not None:
            total = st.total + activation_memory(ck, self.micro_batch, load.sequence.max, load.vit.max)
            verdict = 'fits' if total <= self.gpu_memory_gib * GIB else 'does NOT fit'
            out.append(f'  --micro-batch {self.micro_batch} at {self.resolution} (* above), longest sample '
                       f'({load.sequence.max:,} tokens): {gib(total)} per GPU, {verdict} in {self.gpu_memory_gib:g} GiB')
            if load.over_max_length:
                out.append(f'  {load.over_max_length} sample(s) exceed max_length {self.max_length}: with strict the '
                           f'run stops on the first; raise --max_length')
            flops = training_flops_per_sample(ck, c, load, self.tuning) * load.samples
            hours = flops / (self.gpus * self.gpu_tflops * 1e12) / 3600
            out.append(f'  compute per epoch: {flops / 1e15:,.1f} PFLOP ({"4" if self.tuning == "full" else "3"} x '
                       f'forward with recompute) = {hours:,.2f} h on {self.gpus} GPU(s) at {self.gpu_tflops:g} '
                       f'TFLOP/s each')
        return out


def _human(n: float) -> str:
    for unit, div in (('B', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(n) >= div:
            return f'{n / div:.2f}{unit}'
    return f'{n:.0f}'


def text_tokens(entry, split: str, settings, tokenizer) -> list[int]:
    """Text tokens per row of a registry split: system prompt + formatted question + answer
    (Qwen2 BPE) + the chat frame. Reads the text columns from the same source as the loader."""
    import datasets
    from swift.hub import get_hub

    from ..data.rows import format_question
    from ..data.sources import resolve_source

    source = resolve_source(entry, None, settings)
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        ds = get_hub(source.use_hf).load_dataset(source.dataset_id, entry.sources.subset,
                                                 entry.splits[split].hub_split, revision=source.revision)
    finally:
        datasets.logging.set_verbosity(verbosity)
    ds = getattr(ds, '_hf_ds', ds)
    cols = entry.columns
    wanted = [c for c in (cols.question, cols.answer, cols.choices) if c and c in ds.column_names]
    system = len(tokenizer.encode(entry.prompt.system))
    out = []
    for batch in ds.select_columns(wanted).iter(batch_size=1000):
        n = len(batch[wanted[0]]) if wanted else 0
        for i in range(n):
            q = str(batch[cols.question][i] or '') if cols.question in batch else ''
            choices = [str(x) for x in (batch[cols.choices][i] or [])] if cols.choices in batch else None
            a = str(batch[cols.answer][i] or '')
            text = format_question(entry, q, choices)
            out.append(system + len(tokenizer.encode(text)) + len(tokenizer.encode(a)) + FRAME_TOKENS)
    return out


def recipe_settings(recipe_text: str, extra: Sequence[str] = ()) -> dict:
    """The recipe's flags with `swift sft` overrides after `--` applied (the last value wins)."""
    import yaml
    settings = yaml.safe_load(recipe_text)
    i = 0
    while i < len(extra):
        if extra[i].startswith('--'):
            key, values = extra[i][2:].replace('-', '_'), []
            i += 1
            while i < len(extra) and not extra[i].startswith('--'):
                values.append(extra[i])
                i += 1
            settings[key] = values if key == 'dataset' else (values[0] if len(values) == 1 else values)
        else:
            i += 1
    if isinstance(settings.get('dataset'), str):
        settings['dataset'] = settings['dataset'].split()
    return settings


def plan_recipe(recipe_text: str, *, gpus: int, micro_batch: int, zero3: bool, extra: Sequence[str] = (),
                gpu_memory_gib: float = 80.0, settings=None, read_data: bool = True,
                gpu_tflops: float = 125.0) -> Optional[RecipePlan]:
    """The plan of a recipe as `medres train` would launch it; None when medres ships no configuration
    for its model (another checkpoint swapped in with --model)."""
    from .checkpoint import find_checkpoint
    from .graphs import counts

    rs = recipe_settings(recipe_text, extra)
    ck = find_checkpoint(str(rs.get('model', '')), rs.get('model_type'))
    if ck is None:
        return None
    tuning = rs.get('tuner_type', 'full')
    lora_rank = int(rs.get('lora_rank', 8))
    c = counts(ck.name, 'full' if tuning == 'full' else 'lora', lora_rank)
    env = {k: str(v) for k, v in (rs.get('ENV') or {}).items()}
    policy = ResolutionPolicy.from_env(env) or ResolutionPolicy(mode='native')
    deepspeed = str(rs.get('deepspeed', 'zero2'))
    zero = 3 if zero3 or deepspeed.startswith('zero3') else 2
    plan = RecipePlan(ck, tuning, c, gpus, zero, gpu_memory_gib, micro_batch, policy.mode,
                      max_length=int(rs['max_length']) if rs.get('max_length') else None, gpu_tflops=gpu_tflops)
    if not read_data:
        plan.data_note = 'tokens per sample: not read (--no-data)'
        return plan
    try:
        plan.loads, plan.data_note = _loads(ck, rs.get('dataset') or [], policy, settings, plan.max_length)
    except Exception as e:  # a plan without data is still a plan; say why
        plan.data_note = f'tokens per sample: could not read the dataset ({type(e).__name__}: {e})'
    return plan


def _loads(ck, datasets_: Sequence[str], policy: ResolutionPolicy, settings, max_length):
    from dataclasses import replace

    from ..data.registry import get_entry
    from ..data.sizes import registry_sizes
    from ..data.sources import resolve_source
    from ..data.spec import DatasetSpec
    from ..fixtures.qwen_tokenizer import build_qwen2_tokenizer

    tokenizer = build_qwen2_tokenizer()
    splits, texts, names = [], [], []
    for text in datasets_:
        spec = DatasetSpec.parse(text)
        entry = get_entry(spec.name, settings.registry_dirs)
        source = resolve_source(entry, None, settings)
        for split in spec.resolve(entry):            # the run's split: the entry's default unless named
            # Headers only: a plan reads sizes, not pixels (the run itself refuses undecodable rows).
            splits.append(registry_sizes(entry, split, settings, source, headers_only=True))
            texts += text_tokens(entry, split, settings, tokenizer)
            names.append(f'{entry.registered_name}:{split}')
    loads = {m: dataset_load(ck, splits, texts, replace(policy, mode=m), max_length) for m in RESOLUTION_MODES}
    n = sum(len(s.sizes) for s in splits)
    note = (f'data {", ".join(names)}: {n:,} samples, sizes from image headers; text = Qwen2 BPE + '
            f'{FRAME_TOKENS} frame tokens' + (' (approximates InternLM2)' if ck.family_name == 'internvl' else ''))
    return loads, note

