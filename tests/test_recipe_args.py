"""Every recipe parsed by ms-swift's own argument classes, offline, against the real configuration.

`swift sft <recipe>` turns the YAML into flags (`swift.cli.main.parse_yaml_args`, which also applies
`ENV:`) and parses them into `SftArguments` (ms-swift 4.x's name for the training arguments); the
test does the same with `--model` pointing at a weightless folder holding the checkpoint's published
configuration, so a renamed or removed ms-swift flag fails here, not in a user's first GPU hour.

Two things a CPU machine cannot do are stood in for, and said so: transformers refuses bf16 without
a bf16 GPU (the check is answered "yes", as on the recipes' A100/H100s), and ms-swift's DeepSpeed
setup needs the `deepspeed` package (an extra): without it `--deepspeed` is parsed as a name ms-swift
maps to one of its shipped configurations, and the rest of the recipe is parsed as written.
"""
import importlib.util

import pytest
import yaml

from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.train.checkpoint import find_checkpoint
from swift_plugins.train.recipes import RECIPES_DIR

TRAIN = sorted((RECIPES_DIR / 'train').glob('*.yaml'))
INFER = sorted((RECIPES_DIR / 'infer').glob('*.yaml'))
HAVE_DEEPSPEED = importlib.util.find_spec('deepspeed') is not None


def test_the_pack_is_24_training_and_3_inference_recipes():
    assert len(TRAIN) == 24 and len(INFER) == 3


@pytest.fixture
def bf16_gpu(monkeypatch):
    import transformers.training_args as training_args
    monkeypatch.setattr(training_args, 'is_torch_bf16_gpu_available', lambda: True)


def swift_argv(recipe, *extra):
    """The argv `swift sft|infer <recipe> <extra>` hands to the argument class (ENV applied, as ms-swift does)."""
    from swift.cli.main import parse_yaml_args
    argv = [str(recipe), *extra]
    parse_yaml_args(argv)
    return argv


def deepspeed_config_path(name):
    """The file ms-swift's `SftArguments._init_deepspeed` resolves a --deepspeed name to."""
    from pathlib import Path

    import swift.arguments.sft_args as sft_args
    return Path(sft_args.__file__).resolve().parent.parent / 'config' / f'{name}.json'


def parse_train(recipe, shell, *extra):
    from swift.arguments import SftArguments
    from swift.utils import parse_args
    argv = swift_argv(recipe, '--model', str(shell), *extra)
    deepspeed = None
    while not HAVE_DEEPSPEED and '--deepspeed' in argv:      # the last one wins, as in argparse
        i = argv.index('--deepspeed')
        deepspeed = argv[i + 1]
        del argv[i:i + 2]
    args, rest = parse_args(SftArguments, argv)
    return args, rest, deepspeed


@pytest.mark.usefixtures('swift_registered', 'bf16_gpu')
@pytest.mark.parametrize('recipe', TRAIN, ids=lambda p: p.stem)
def test_training_recipe_parses_under_sft_arguments(recipe, checkpoint_shells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                 # ms-swift resolves output_dir against the working directory
    raw = yaml.safe_load(recipe.read_text())
    ck = find_checkpoint(raw['model'], raw['model_type'])
    args, rest, deepspeed = parse_train(recipe, checkpoint_shells[ck.name])
    assert rest == [], f'{recipe.name}: flags ms-swift does not know: {rest}'
    assert (args.model_type, args.template) == (ck.model_type, ck.template)
    assert args.model_meta.model_arch is not None and args.model_meta.is_multimodal
    # What the recipe asks for is what ms-swift will do.
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128
    assert (args.learning_rate, args.lr_scheduler_type, args.weight_decay) == (1e-5, 'cosine', 0.1)
    assert (args.adam_beta2, args.max_length, args.strict, args.gradient_checkpointing) == (0.999, 16384, True, True)
    assert args.truncation_strategy == 'delete' and args.bf16 and args.split_dataset_ratio == 0
    assert args.dataset == ['medres/vqa-rad']
    assert args.vit_gradient_checkpointing            # follows gradient_checkpointing
    assert not (args.freeze_vit or args.freeze_aligner or args.freeze_llm)
    arch = args.model_meta.model_arch
    if raw['tuner_type'] == 'full':
        assert args.tuner_type == 'full'
        assert args.freeze_parameters == [] and args.trainable_parameters == list(arch.aligner)
    else:
        assert (args.tuner_type, args.target_modules) == ('lora', ['all-linear'])
        assert (args.lora_rank, args.lora_alpha, args.lora_dropout) == (8, 32, 0.05)
    # ENV reached the environment the way `swift sft` applies it, and the policy reads it back.
    mode = recipe.stem.rsplit('-', 1)[1]
    assert ResolutionPolicy.from_env().mode == mode
    if HAVE_DEEPSPEED:
        assert args.deepspeed['zero_optimization']['stage'] == 2
    else:
        assert deepspeed == 'zero2' and deepspeed_config_path(deepspeed).is_file()


@pytest.mark.usefixtures('swift_registered', 'bf16_gpu')
def test_a_renamed_flag_would_fail(checkpoint_shells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = RECIPES_DIR / 'train' / 'qwen2-vl-2b-full-native.yaml'
    text = recipe.read_text().replace('freeze_aligner:', 'freeze_projector:')   # no such ms-swift flag
    renamed = tmp_path / recipe.name
    renamed.write_text(text)
    _, rest, _ = parse_train(renamed, checkpoint_shells['qwen2-vl-2b'])
    assert '--freeze_projector' in rest


@pytest.mark.usefixtures('swift_registered', 'bf16_gpu')
def test_zero3_override_of_medres_train_parses(checkpoint_shells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = RECIPES_DIR / 'train' / 'qwen2-vl-7b-full-native.yaml'
    args, rest, deepspeed = parse_train(recipe, checkpoint_shells['qwen2-vl-7b'], '--deepspeed', 'zero3',
                                        '--per_device_train_batch_size', '2', '--gradient_accumulation_steps', '8')
    assert rest == [] and args.per_device_train_batch_size * args.gradient_accumulation_steps * 8 == 128
    if HAVE_DEEPSPEED:
        assert args.deepspeed['zero_optimization']['stage'] == 3
    else:
        assert deepspeed == 'zero3' and deepspeed_config_path('zero3').is_file()


@pytest.mark.usefixtures('swift_registered')
@pytest.mark.parametrize('recipe', INFER, ids=lambda p: p.stem)
@pytest.mark.parametrize('name', ['qwen2-vl-2b', 'internvl2.5-2b', 'llava-onevision'])
def test_inference_recipe_parses_under_infer_arguments(recipe, name, checkpoint_shells, tmp_path, monkeypatch):
    from swift.arguments import InferArguments
    from swift.utils import parse_args

    from swift_plugins.train.checkpoint import get_checkpoint
    monkeypatch.chdir(tmp_path)
    ck = get_checkpoint(name)
    argv = swift_argv(recipe, '--model', str(checkpoint_shells[name]), '--model_type', ck.model_type,
                      '--template', ck.template, '--result_path', str(tmp_path / 'predictions.jsonl'))
    args, rest = parse_args(InferArguments, argv)
    assert rest == []
    assert (args.infer_backend, args.temperature, args.max_new_tokens) == ('transformers', 0.0, 128)
    assert args.max_length == 16384 and args.val_dataset == ['medres/vqa-rad:test']
    assert (args.model_type, args.template) == (ck.model_type, ck.template)
    assert ResolutionPolicy.from_env().mode == recipe.stem


def trained_by_ms_swift(args, name):
    """Per tower, the parameters ms-swift's own tuner setup (`TunerMixin.prepare_model`) leaves trainable
    on the checkpoint's real-size meta-device graph."""
    from swift.pipelines.train.tuner import TunerMixin

    from swift_plugins.train.checkpoint import get_checkpoint
    from swift_plugins.train.graphs import TOWERS, meta_model, tower_of
    base = meta_model(get_checkpoint(name))
    model = TunerMixin.prepare_model(args, base)
    out = dict.fromkeys(TOWERS, 0)
    for pname, p in model.named_parameters():
        if p.requires_grad:
            out[tower_of(base, pname.removeprefix('base_model.model.'))] += p.numel()
    return out


@pytest.mark.usefixtures('swift_registered', 'bf16_gpu')
@pytest.mark.parametrize('tuning', ['full', 'lora'])
@pytest.mark.parametrize('name', ['qwen2-vl-2b', 'qwen2-vl-7b', 'internvl2.5-2b', 'llava-onevision'])
def test_ms_swift_trains_what_the_parameter_table_says(name, tuning, checkpoint_shells, tmp_path, monkeypatch):
    from swift_plugins.train.graphs import counts
    monkeypatch.chdir(tmp_path)
    recipe = RECIPES_DIR / 'train' / f'{name}-{tuning}-native.yaml'
    args, rest, _ = parse_train(recipe, checkpoint_shells[name])
    assert rest == []
    trained = trained_by_ms_swift(args, name)
    assert trained == counts(name, tuning).trainable
    assert trained['vision'] > 0 and trained['projector'] > 0       # freeze_vit / freeze_aligner false honoured
    # The control: ms-swift's defaults (freeze_vit, freeze_aligner true) would leave the vision encoder alone.
    args, _, _ = parse_train(recipe, checkpoint_shells[name], '--freeze_vit', 'true', '--freeze_aligner', 'true')
    frozen = trained_by_ms_swift(args, name)
    assert frozen['vision'] == 0 and frozen['projector'] == 0 and frozen['language'] > 0
