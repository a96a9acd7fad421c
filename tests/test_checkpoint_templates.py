"""The real checkpoints' templates, offline: tokens the stock template produces equal the policy's plan.

Each of the four checkpoints the recipes name gets a weightless folder with its published
configuration and real special-token ids (`fixtures.checkpoint_shells`); ms-swift builds the
processor and the template of the recipe's (model_type, template) pair from it, InternVL2.5 through
the remote-code path (`internvl_chat` + `internvl2_5`: ms-swift's own tiling, `max_num` knob). A
sweep of sizes (28x28 px to 12 MP) and aspect ratios (1:1, 4:3, 16:9, 1:10, 1:150, and the two
extreme ones lying down) is encoded under native, low and mixed (encode only, no forward pass).
"""
import math

import pytest
import yaml
from PIL import Image

from swift_plugins.errors import PolicyError
from swift_plugins.resolution.families import TEMPLATE_FAMILY
from swift_plugins.resolution.mixing import MixSlot
from swift_plugins.resolution.policy import ResolutionPolicy
from swift_plugins.train.checkpoint import checkpoints, find_checkpoint, get_checkpoint
from swift_plugins.train.recipes import RECIPES_DIR

AREAS = (28 * 28, 448 * 448, 1_000_000, 4_000_000, 12_000_000)
RATIOS = ((1, 1), (4, 3), (16, 9), (1, 10), (1, 150), (10, 1), (150, 1))   # width : height


def size(area, ratio):
    r = ratio[0] / ratio[1]
    return max(1, round(math.sqrt(area * r))), max(1, round(math.sqrt(area / r)))


SIZES = [size(a, r) for a in AREAS for r in RATIOS]
# CI's share: every ratio up to 1 MP, and one 12 MP image (the heavy part of encoding is normalizing
# pixels: a 12 MP InternVL image is 60 tiles); the full sweep is the slow test.
FAST_SIZES = [size(a, r) for a in AREAS[:3] for r in RATIOS] + [size(12_000_000, (4, 3))]
CHECKPOINT_NAMES = ['qwen2-vl-2b', 'qwen2-vl-7b', 'internvl2.5-2b', 'llava-onevision']
_IMAGES = {}


def image(w, h):
    # Solid colour: the processors' work does not depend on content, and it is cheap to make.
    if (w, h) not in _IMAGES:
        _IMAGES[(w, h)] = Image.new('RGB', (w, h), (150, 60, 90))
    return _IMAGES[(w, h)]


def recipe_pairs():
    out = set()
    for path in sorted((RECIPES_DIR / 'train').glob('*.yaml')):
        r = yaml.safe_load(path.read_text())
        out.add((r['model'], r['model_type'], r['template']))
    return out


def test_every_recipe_model_has_its_real_configuration_shipped():
    pairs = recipe_pairs()
    assert len(pairs) == 4
    for model, model_type, template in pairs:
        ck = find_checkpoint(model, model_type)
        assert ck is not None, model
        assert (ck.model_type, ck.template) == (model_type, template)
    assert {c.model for c in checkpoints()} == {m for m, _, _ in pairs}


def qwen_max_ratio():
    from qwen_vl_utils import vision_process
    return vision_process.MAX_RATIO


def processor_limit_ok(ck, planned):
    """Whether the real processor accepts the planned size (Qwen2-VL refuses aspect ratios over MAX_RATIO)."""
    if ck.family_name != 'qwen2_vl':
        return True
    w, h = planned
    return max(w, h) / min(w, h) <= qwen_max_ratio()


@pytest.fixture(scope='module')
def templates(checkpoint_shells, swift_registered):
    """One processor per checkpoint, built by ms-swift from the shell as `swift sft --model <dir>` does."""
    from swift.model import get_processor
    return {name: get_processor(str(path), model_type=get_checkpoint(name).model_type)
            for name, path in checkpoint_shells.items()}


def build_template(processor, ck):
    from swift.template import get_template
    return get_template(processor, template_type=ck.template)


@pytest.mark.parametrize('mode', ['native', 'low', 'mixed'])
@pytest.mark.parametrize('name', CHECKPOINT_NAMES)
def test_stock_template_tokens_equal_the_plan(name, mode, templates, monkeypatch):
    sweep(name, mode, FAST_SIZES, templates, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['native', 'low', 'mixed'])
@pytest.mark.parametrize('name', CHECKPOINT_NAMES)
def test_stock_template_tokens_equal_the_plan_full_sweep(name, mode, templates, monkeypatch):
    sweep(name, mode, SIZES, templates, monkeypatch)


def sweep(name, mode, sizes, templates, monkeypatch):
    ck = get_checkpoint(name)
    monkeypatch.setenv('MEDRES_RESOLUTION', mode)
    t = build_template(templates[name], ck)
    family = t.medres_family
    # The template reads the same unit sizes the published configuration gives.
    assert type(family) is TEMPLATE_FAMILY[ck.template]
    assert family == ck.family()
    token_id = t.tokenizer.convert_tokens_to_ids(ck.image_token())
    assert token_id == ck.token_id(ck.image_token())
    policy = ResolutionPolicy.from_env()
    n = len(sizes)
    checked = refused = 0
    decisions = set()
    for i, (w, h) in enumerate(sizes):
        meta = {'id': f'sweep/test/{i}', 'dataset': 'sweep', 'split': 'test'}
        if mode == 'mixed':
            meta['mix'] = {'pos': i, 'n': n, 'k': n // 2}
        row = {'messages': [{'role': 'user', 'content': '<image>What is shown?'},
                            {'role': 'assistant', 'content': 'yes'}],
               'images': [image(w, h)], 'chat_template_kwargs': {'medres': meta}}
        decision = policy.decide(meta['id'], MixSlot(**meta['mix']) if 'mix' in meta else None)
        decisions.add(decision)
        try:
            plan = policy.plan(w, h, decision, family)
        except PolicyError as e:
            # Beyond the real processor's aspect-ratio limit: refused when planned, and the run stops
            # (naming the row) rather than train on something else.
            assert 'aspect ratio' in str(e) and ck.family_name == 'qwen2_vl'
            with pytest.raises(Exception, match='aspect ratio'):
                t.encode(row)
            refused += 1
            continue
        assert processor_limit_ok(ck, plan.size)   # whatever is planned, the real processor accepts
        encoded = t.encode(row)
        actual = sum(1 for x in encoded['input_ids'] if x == token_id)
        assert actual == plan.tokens, (name, mode, (w, h), decision, plan)
        checked += 1
    assert decisions == ({'low', 'native'} if mode == 'mixed' else {mode})
    assert checked + refused == n and checked >= n - 6
    if ck.family_name != 'qwen2_vl':
        assert refused == 0
    return checked, refused


@pytest.mark.parametrize('name', ['internvl2.5-2b'])
def test_internvl_remote_code_path_tiles_with_max_num(name, templates, monkeypatch):
    """`internvl_chat` + `internvl2_5` encode through ms-swift's `transform_image`, sized by `max_num`."""
    from swift.template.templates.internvl import Internvl2Template

    ck = get_checkpoint(name)
    t = build_template(templates[name], ck)          # no policy: the stock template, MAX_NUM default 12
    assert isinstance(t, Internvl2Template) and t.max_num == ck.config['max_dynamic_patch'] == 12
    assert t.input_size == ck.config['force_image_size'] == 448
    row = {'messages': [{'role': 'user', 'content': '<image>x'}, {'role': 'assistant', 'content': 'y'}],
           'images': [image(4000, 3000)]}
    enc = t.encode(row)
    # 4:3 under 12 tiles: a 4x3 grid plus the thumbnail, 256 tokens each, between <img> and </img>.
    assert enc['pixel_values'].shape[0] == 13
    ids = enc['input_ids']
    img, end, ctx = (ck.token_id(x) for x in ('<img>', '</img>', '<IMG_CONTEXT>'))
    assert ids.count(ctx) == 13 * 256 and ids.index(end) - ids.index(img) - 1 == 13 * 256
    # The policy's knob: native gives the 12 MP image its own tile budget (an 8x6 grid + thumbnail), which
    # the template's max_num of 12 would not allow; the knob is restored after the sample.
    monkeypatch.setenv('MEDRES_RESOLUTION', 'native')
    t = build_template(templates[name], ck)
    plan = ResolutionPolicy(mode='native').plan(4000, 3000, 'native', t.medres_family)
    enc = t.encode(row)
    assert plan.size == (8 * 448, 6 * 448)
    assert enc['pixel_values'].shape[0] == t.medres_family.num_tiles(plan.size) == 49 == plan.tokens // 256
    assert t.max_num == 12


@pytest.mark.parametrize('name', ['qwen2-vl-2b', 'internvl2.5-2b', 'llava-onevision'])
def test_the_plans_chat_frame_allowance_covers_the_real_templates(name, templates):
    """`train.plan.FRAME_TOKENS`: what a single-turn sample costs beyond system, question, answer and image."""
    from swift_plugins.train.plan import FRAME_TOKENS

    ck = get_checkpoint(name)
    t = build_template(templates[name], ck)
    t.set_mode('train')
    system, question, answer = 'You are a biomedical expert.', 'Is there a fracture in the left femur?', 'yes'
    row = {'messages': [{'role': 'system', 'content': system}, {'role': 'user', 'content': '<image>' + question},
                        {'role': 'assistant', 'content': answer}], 'images': [image(448, 448)]}
    ids = t.encode(row)['input_ids']
    visual = ids.count(ck.token_id(ck.image_token()))
    content = sum(len(t.tokenizer.encode(s, add_special_tokens=False)) for s in (system, question, answer))
    frame = len(ids) - visual - content
    assert FRAME_TOKENS - 3 <= frame <= FRAME_TOKENS
