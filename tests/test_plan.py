"""The memory and compute plan: its formulas, its per-sample loads, and `medres train --dry-run`."""
import pytest

from swift_plugins.resolution.families import InternVL, LlavaOneVision, Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.resolution.tokens import SplitSizes
from swift_plugins.train.checkpoint import get_checkpoint
from swift_plugins.train.graphs import counts
from swift_plugins.train.plan import (
    GIB,
    activation_memory,
    dataset_load,
    largest_micro_batch,
    plan_recipe,
    recipe_settings,
    static_memory,
    vision_positions,
)
from swift_plugins.train.recipes import RECIPES_DIR

from helpers import run_medres

RECIPE = RECIPES_DIR / 'train' / 'qwen2-vl-2b-full-native.yaml'


def test_static_memory_is_the_zero_formula():
    p, t, n = 2_000_000_000, 1_000_000, 8
    z2 = static_memory(p, t, n, 2)
    assert (z2.weights, z2.gradients, z2.optimizer) == (2 * p, 2 * t / n, 12 * t / n)
    z3 = static_memory(p, t, n, 3)
    assert z3.weights == 2 * p / n and z3.total < z2.total
    with pytest.raises(ValueError, match='ZeRO stage 1'):
        static_memory(p, t, n, 1)


def test_vision_positions_per_family():
    assert vision_positions(Qwen2VL(), (448, 448)) == [32 * 32]                  # 4 per token before the merge
    assert vision_positions(InternVL(), (896, 896)) == [1025] * 5                 # 2x2 tiles + thumbnail
    assert vision_positions(InternVL(), (448, 448)) == [1025]
    assert vision_positions(LlavaOneVision(), (768, 768)) == [729] * 5            # base view + 2x2 crops


def test_activations_grow_with_the_batch_and_the_fit_is_the_largest():
    ck = get_checkpoint('qwen2-vl-2b')
    a1, a2 = activation_memory(ck, 1, 4000, 16000), activation_memory(ck, 2, 4000, 16000)
    assert a2 == pytest.approx(2 * a1)
    # The logits dominate a long Qwen2-VL sample: 10 bytes x 151,936 vocabulary per token.
    assert activation_memory(ck, 1, 16384, 0) > 10 * 16384 * 151936
    static = static_memory(2_208_985_600, 2_208_985_600, 8, 2)
    b = largest_micro_batch(ck, static, 80 * GIB, 4000, 16000)
    assert b >= 1
    assert static.total + activation_memory(ck, b, 4000, 16000) <= 80 * GIB
    assert static.total + activation_memory(ck, b + 1, 4000, 16000) > 80 * GIB
    assert largest_micro_batch(ck, static, 8 * GIB, 4000, 16000) == 0


def test_dataset_load_uses_the_policy_plans_and_the_balanced_draw():
    ck = get_checkpoint('qwen2-vl-2b')
    sizes = [(2000, 1500), (640, 480), (4000, 3000), (300, 200)] * 5
    splits = [SplitSizes('fx', 'radiology', 'train', sizes)]
    texts = [40] * len(sizes)
    native = dataset_load(ck, splits, texts, ResolutionPolicy(mode='native'), max_length=16384)
    low = dataset_load(ck, splits, texts, ResolutionPolicy(mode='low'), max_length=16384)
    mixed = dataset_load(ck, splits, texts, ResolutionPolicy(mode='mixed'), max_length=16384)
    plans = [ResolutionPolicy(mode='native').plan(w, h, 'native', ck.family()).tokens for w, h in sizes]
    assert native.visual.max == max(plans) and native.visual.mean == pytest.approx(sum(plans) / len(plans))
    assert native.sequence.max == max(plans) + 40 and native.vit.max == 4 * max(plans)
    assert low.visual.max <= 1280 < native.visual.max
    assert mixed.low == len(sizes) // 2 and native.low == 0 and low.low == len(sizes)
    assert native.over_max_length == 0
    tight = dataset_load(ck, splits, texts, ResolutionPolicy(mode='native'), max_length=8000)
    assert tight.over_max_length == 5                      # the 4000x3000 images: 15,180 tokens each


def test_recipe_settings_apply_the_overrides_after_dashes():
    rs = recipe_settings(RECIPE.read_text(), ['--dataset', 'medres/slake', 'medres/path-vqa', '--max_length', '8192'])
    assert rs['dataset'] == ['medres/slake', 'medres/path-vqa'] and rs['max_length'] == '8192'
    assert recipe_settings(RECIPE.read_text())['dataset'] == ['medres/vqa-rad']


def test_plan_of_a_lora_recipe_counts_its_rank_and_zero3():
    text = (RECIPES_DIR / 'train' / 'internvl2.5-2b-lora-low.yaml').read_text()
    plan = plan_recipe(text, gpus=4, micro_batch=2, zero3=True, read_data=False)
    assert plan.zero == 3 and plan.tuning == 'lora' and plan.resolution == 'low'
    assert plan.counts.trainable_params == counts('internvl2.5-2b', 'lora').trainable_params
    wider = plan_recipe(text, gpus=4, micro_batch=2, zero3=False, extra=['--lora_rank', '16'], read_data=False)
    assert wider.counts.trainable_params == 2 * plan.counts.trainable_params and wider.zero == 2
    assert plan_recipe(text, gpus=1, micro_batch=1, zero3=False, extra=['--model', 'org/other-vlm'],
                       read_data=False) is None


def test_dry_run_prints_the_plan_from_the_dataset(use_local_sources):
    out = run_medres('train', str(RECIPE), '--nproc-per-node', '8', '--micro-batch', '2', '--dry-run',
                     '--gpu-memory', '40')
    assert '2 per GPU x 8 accumulation x 8 GPUs' in out                      # the batch plan is unchanged
    assert 'plan for Qwen/Qwen2-VL-2B-Instruct (qwen2_vl / qwen2_vl), full, ZeRO-2, 8 GPU(s) of 40 GiB' in out
    assert 'parameters 2.21B (vision 631.18M, projector 34.09M, language 1.54B)' in out
    assert 'weights 4.1 GiB (2P) + gradients 0.5 GiB (2T/N) + AdamW 3.1 GiB (12T/N)' in out
    assert 'data medres/vqa-rad:train: 24 samples' in out
    rows = [line for line in out.splitlines() if any(f' {m} ' in line for m in ('native', 'low', '*native'))]
    assert any('*native' in r for r in rows) and any(' low ' in r for r in rows)
    assert '--micro-batch 2 at native' in out and 'fits in 40 GiB' in out
    assert 'compute per epoch' in out


def test_dry_run_without_the_dataset_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_REGISTRY', str(tmp_path))
    (tmp_path / 'nowhere.yaml').write_text((RECIPES_DIR.parent / 'datasets_registry' / 'vqa-rad.yaml').read_text()
                                           .replace('name: vqa-rad', 'name: nowhere', 1))
    out = run_medres('train', str(RECIPE), '--dry-run', '--', '--dataset', 'medres/nowhere')
    assert 'tokens per sample: could not read the dataset' in out
    assert 'per GPU, static' in out
    other = run_medres('train', str(RECIPE), '--dry-run', '--no-data', '--', '--model', 'org/other-vlm')
    assert 'no memory plan' in other
