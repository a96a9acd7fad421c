"""Recipes: 24 training + 3 inference YAMLs read by ms-swift's own argument classes; the launcher's
batch arithmetic; one real CPU run per model family with the model swapped for a tiny one."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.train.launch import LaunchError, batch_plan, launch_command, launch_env
from swift_plugins.train.recipes import RECIPES_DIR, build

TRAIN = sorted((RECIPES_DIR / 'train').glob('*.yaml'))
INFER = sorted((RECIPES_DIR / 'infer').glob('*.yaml'))
MEDRES = str(Path(sys.executable).parent / 'medres')


def swift_parse(cls, recipe: Path, extra=()):
    """Parse a recipe exactly as `swift <cmd> <recipe>` does, with ms-swift's own parser."""
    from swift.cli.main import parse_yaml_args
    from swift.utils.utils import _patch_get_type_hints
    from transformers import HfArgumentParser
    argv = [str(recipe), *extra]
    env = dict(os.environ)
    try:
        parse_yaml_args(argv)  # expands the YAML into flags and applies its ENV section
        policy = ResolutionPolicy.from_env()
    finally:
        os.environ.clear()
        os.environ.update(env)
    with _patch_get_type_hints():
        parser = HfArgumentParser([cls])
    ns, remaining = parser.parse_known_args(argv)
    assert remaining == [], f'{recipe.name}: flags ms-swift does not know: {remaining}'
    return ns, policy


def test_all_recipes_exist_and_match_their_sources():
    names = {p.stem for p in TRAIN}
    assert len(names) == 24
    for model in ('qwen2-vl-2b', 'qwen2-vl-7b', 'internvl2.5-2b', 'llava-onevision'):
        for tuning in ('full', 'lora'):
            for res in ('native', 'low', 'mixed'):
                assert f'{model}-{tuning}-{res}' in names
    assert {p.stem for p in INFER} == {'native', 'low', 'mixed'}
    assert build(check=True) == [], 'recipes/train, infer or paper edited by hand: run `medres recipes build`'


def test_paper_scripts_are_generated_from_one_template(tmp_path):
    """One table script per model with a `paper:` entry; a hand edit, a lost executable bit or a
    stray script is reported by `build --check` and undone by `build`."""
    import shutil
    root = tmp_path / 'recipes'
    shutil.copytree(RECIPES_DIR, root)
    scripts = sorted(p.name for p in (root / 'paper').glob('*.sh'))
    assert scripts == ['table2_qwen2-vl-2b.sh', 'table3_internvl2.5-2b.sh', 'table4_llava-onevision.sh',
                       'table5_qwen2-vl-7b.sh']
    t5 = (root / 'paper' / 'table5_qwen2-vl-7b.sh').read_text()
    assert 'Paper Table 5: Qwen2-VL-7B-Instruct' in t5 and 'MODEL=qwen2-vl-7b\n' in t5 and 'args+=(--zero3)' in t5
    assert 'MICRO_BATCH=${MICRO_BATCH:-1}' in t5 and '@' not in t5.replace('"${DATASETS[@]}"', '').replace(
        '"${args[@]}"', '').replace('"$@"', '')
    assert 'args+=(--zero3)' not in (root / 'paper' / 'table2_qwen2-vl-2b.sh').read_text()
    edited = root / 'paper' / 'table3_internvl2.5-2b.sh'
    edited.write_text(edited.read_text().replace('GPUS:-8', 'GPUS:-4'))
    (root / 'paper' / 'table4_llava-onevision.sh').chmod(0o644)
    (root / 'paper' / 'table9_mine.sh').write_text('#!/bin/sh\n')
    assert sorted(p.name for p in build(root, check=True)) == ['table3_internvl2.5-2b.sh', 'table4_llava-onevision.sh',
                                                              'table9_mine.sh']
    build(root)
    assert build(root, check=True) == [] and not (root / 'paper' / 'table9_mine.sh').exists()
    assert 'GPUS:-8' in edited.read_text() and os.access(root / 'paper' / 'table4_llava-onevision.sh', os.X_OK)


@pytest.mark.parametrize('recipe', TRAIN, ids=lambda p: p.stem)
def test_training_recipe_parses_with_the_papers_settings(recipe):
    from swift.arguments import SftArguments
    ns, policy = swift_parse(SftArguments, recipe)
    model, tuning, res = recipe.stem.rsplit('-', 2)
    assert (ns.learning_rate, ns.lr_scheduler_type, ns.weight_decay) == (1e-5, 'cosine', 0.1)
    assert ns.torch_dtype == 'bfloat16' and ns.deepspeed == 'zero2' and ns.adam_beta2 == 0.999
    assert ns.per_device_train_batch_size * ns.gradient_accumulation_steps == 128
    assert ns.tuner_type == tuning and ns.freeze_vit is False and ns.freeze_aligner is False
    if tuning == 'lora':
        assert ns.target_modules == ['all-linear']
    assert ns.strict is True and ns.truncation_strategy == 'delete'
    assert policy.mode == res
    assert (policy.low_pixels, policy.native_max_pixels, policy.filter) == (1_003_520, 12_000_000, 'lanczos')
    if res == 'mixed':
        assert (policy.mix_ratio, policy.balance) == (0.5, 'modality')
    expected = {'qwen2-vl-2b': ('Qwen/Qwen2-VL-2B-Instruct', 'qwen2_vl'),
                'qwen2-vl-7b': ('Qwen/Qwen2-VL-7B-Instruct', 'qwen2_vl'),
                'internvl2.5-2b': ('OpenGVLab/InternVL2_5-2B', 'internvl_chat'),
                'llava-onevision': ('llava-hf/llava-onevision-qwen2-0.5b-ov-hf', 'llava_onevision_hf')}[model]
    assert (ns.model, ns.model_type) == expected
    text = recipe.read_text()
    assert text.startswith('# ') and 'medres train' in text and 'Override example' in text


@pytest.mark.parametrize('recipe', INFER, ids=lambda p: p.stem)
def test_inference_recipe_parses(recipe):
    from swift.arguments import InferArguments
    ns, policy = swift_parse(InferArguments, recipe, ['--model', 'some/ckpt'])
    assert ns.temperature == 0 and ns.infer_backend == 'transformers' and ns.max_new_tokens == 128
    assert policy.mode == recipe.stem


@pytest.mark.parametrize('gpus, nodes, micro, accum', [
    (1, 1, 1, 128), (1, 1, 4, 32), (2, 1, 2, 32), (4, 1, 2, 16), (8, 1, 2, 8), (8, 2, 1, 8), (16, 1, 8, 1)])
def test_batch_arithmetic_reaches_128(gpus, nodes, micro, accum):
    plan = batch_plan(micro, gpus, nodes)
    assert plan.grad_accum == accum and plan.global_batch == 128


def test_impossible_batches_are_refused_with_options():
    with pytest.raises(LaunchError, match=r'cannot reach a global batch of 128 exactly .* on 3 GPUs.*no micro-batch'):
        batch_plan(1, 3)
    with pytest.raises(LaunchError, match=r'micro-batches that reach it on 8 GPUs: \[1, 2, 4, 8, 16\]'):
        batch_plan(3, 8)
    with pytest.raises(LaunchError, match='micro-batch must be at least 1'):
        batch_plan(0, 8)


def test_launch_env_and_command():
    plan = batch_plan(2, 8, 2)
    env = launch_env(plan, node_rank=1, master_addr='10.0.0.1', master_port=29500)
    assert env == {'NPROC_PER_NODE': '8', 'NNODES': '2', 'NODE_RANK': '1', 'MASTER_ADDR': '10.0.0.1',
                   'MASTER_PORT': '29500'}
    assert launch_env(batch_plan(1, 1)) == {}
    with pytest.raises(LaunchError, match='--master-addr'):
        launch_env(plan)
    cmd = launch_command(Path('r.yaml'), plan, zero3=True, extra=['--dataset', 'medres/slake'])
    assert cmd[1:3] == ['sft', 'r.yaml'] and cmd[cmd.index('--gradient_accumulation_steps') + 1] == '4'
    assert cmd[-4:] == ['--deepspeed', 'zero3', '--dataset', 'medres/slake']


def test_cli_dry_run_and_refusal():
    recipe = RECIPES_DIR / 'train' / 'qwen2-vl-7b-full-native.yaml'
    out = subprocess.run([MEDRES, 'train', str(recipe), '--nproc-per-node', '8', '--nnodes', '2', '--micro-batch', '1',
                          '--master-addr', 'node0', '--zero3', '--dry-run', '--', '--dataset', 'medres/slake'],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert '1 per GPU x 8 accumulation x 16 GPUs (2 node(s) x 8) = 128' in out.stdout
    assert 'NPROC_PER_NODE=8 NNODES=2 NODE_RANK=0 MASTER_ADDR=node0' in out.stdout
    assert '--deepspeed zero3 --dataset medres/slake' in out.stdout
    bad = subprocess.run([MEDRES, 'train', str(recipe), '--nproc-per-node', '6', '--dry-run'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'cannot reach a global batch of 128' in bad.stderr


CPU_RUNS = [
    ('qwen2-vl-2b-full-native', 'tiny_qwen2_vl', 'qwen2_vl', 'qwen2_vl'),
    # InternVL2.5-2B is remote code on the hub: offline, the transformers-native InternVL classes
    # (same 448 px tiles and thumbnail, chatml prompt) stand in for it.
    ('internvl2.5-2b-lora-low', 'tiny_internvl', 'internvl', 'internvl_hf'),
    ('llava-onevision-full-mixed', 'tiny_llava_onevision', 'llava_onevision_hf', 'llava_onevision_hf'),
]


@pytest.mark.usefixtures('use_local_sources')
@pytest.mark.parametrize('recipe, fixture, model_type, template', CPU_RUNS, ids=[r[0] for r in CPU_RUNS])
def test_recipe_trains_on_cpu_with_a_tiny_model(recipe, fixture, model_type, template, request, tmp_path):
    model = request.getfixturevalue(fixture)
    out = tmp_path / 'out'
    log = tmp_path / 'tokens.jsonl'
    # Only what a CPU and a toy need differs: model, no DeepSpeed, fp32, 2 steps of a global batch of 2.
    cmd = [MEDRES, 'train', str(RECIPES_DIR / 'train' / f'{recipe}.yaml'), '--global-batch', '2', '--micro-batch', '1',
           '--', '--model', str(model), '--model_type', model_type, '--template', template, '--deepspeed', '',
           '--torch_dtype', 'float32', '--max_steps', '2', '--dataloader_num_workers', '0', '--dataset_num_proc', '1',
           '--report_to', 'none', '--output_dir', str(out), '--add_version', 'false', '--check_model', 'false',
           '--logging_steps', '1']
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'MEDRES_TOKEN_LOG': str(log)})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    recs = [json.loads(line) for line in (out / 'logging.jsonl').read_text().splitlines()]
    losses = [r['loss'] for r in recs if 'loss' in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    state = json.loads((out / 'checkpoint-2' / 'trainer_state.json').read_text())
    assert state['global_step'] == 2
    args = json.loads((out / 'args.json').read_text())
    assert args['gradient_accumulation_steps'] == 2 and args['learning_rate'] == 1e-5
    assert (out / 'checkpoint-2' / ('adapter_model.safetensors' if 'lora' in recipe else 'model.safetensors')).is_file()
    tokens = [json.loads(line) for line in log.read_text().splitlines()]
    resolution = recipe.rsplit('-', 1)[1]
    assert tokens and {t['policy'] for t in tokens} == {resolution}
    assert all(t['predicted_tokens'] == t['actual_tokens'] for t in tokens)
