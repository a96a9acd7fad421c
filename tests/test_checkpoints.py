"""The four real checkpoints as data, and their real-size graphs on the meta device (no weights)."""
import pytest

from swift_plugins.errors import UsageError
from swift_plugins.resolution.families import InternVL, LlavaOneVision, Qwen2VL
from swift_plugins.train.checkpoint import CHECKPOINTS_DIR, checkpoints, find_checkpoint, get_checkpoint
from swift_plugins.train.graphs import counts, lora_summary, meta_model, parameter_counts

NAMES = ['qwen2-vl-2b', 'qwen2-vl-7b', 'internvl2.5-2b', 'llava-onevision']


def test_one_file_per_checkpoint_each_value_file_cited():
    assert sorted(p.stem for p in CHECKPOINTS_DIR.glob('*.json')) == sorted(NAMES)
    for ck in checkpoints():
        for name in ck.files:
            assert ck.sources[name].startswith(f'https://huggingface.co/{ck.model}/'), (ck.name, name)
        assert 'tokenizer' in ck.sources
        assert ck.uncertain, f'{ck.name}: say what could not be checked offline'


def test_lookup_by_recipe_key_hub_id_or_local_folder():
    assert get_checkpoint('Qwen/Qwen2-VL-7B-Instruct').name == 'qwen2-vl-7b'
    assert find_checkpoint('/models/InternVL2_5-2B', 'internvl_chat').name == 'internvl2.5-2b'
    assert find_checkpoint('/models/InternVL2_5-2B', 'qwen2_vl') is None
    with pytest.raises(UsageError, match='no configuration shipped'):
        get_checkpoint('Qwen/Qwen2.5-VL-3B-Instruct')


def test_resolution_units_follow_from_the_published_files():
    q2, q7, iv, ov = (get_checkpoint(n) for n in NAMES)
    assert q2.family() == q7.family() == Qwen2VL(patch_size=14, merge_size=2)
    assert q2.family().unit == 28
    pre = q2.files['preprocessor_config.json']
    assert (pre['min_pixels'], pre['max_pixels']) == (56 * 56, 28 * 28 * 16384)
    # InternVL2.5: 448 px tiles, 32x32 patches pixel-unshuffled by 0.5 -> 256 tokens; up to 12 tiles + thumbnail.
    assert iv.family() == InternVL(tile=448, tokens_per_tile=256, engine_knob='max_dynamic_patch')   # remote code
    assert (iv.config['max_dynamic_patch'], iv.config['use_thumbnail']) == (12, True)
    # LLaVA-OneVision: SigLIP 384 px / 14 px patches -> 27x27 = 729 tokens per crop, 36 pinpoints to 6x6.
    fam = ov.family()
    assert fam == LlavaOneVision()
    assert (fam.crop, fam.tokens_per_side ** 2, fam.max_num_patches, len(fam.pinpoints)) == (384, 729, 9, 36)
    assert max(max(p) for p in fam.pinpoints) == 2304


@pytest.mark.parametrize('name', NAMES)
def test_special_token_ids_agree_between_config_and_tokenizer(name):
    ck = get_checkpoint(name)
    cfg = ck.config
    image_id = ck.token_id(ck.image_token())
    if ck.family_name == 'qwen2_vl':
        assert image_id == cfg['image_token_id'] == 151655
        assert ck.token_id('<|vision_start|>') == cfg['vision_start_token_id']
        assert ck.token_id('<|im_end|>') == cfg['eos_token_id']
    elif ck.family_name == 'llava_onevision':
        assert image_id == cfg['image_token_index'] == 151646
        assert ck.token_id('<video>') == cfg['video_token_index']
    else:
        assert image_id == 92546
        assert (ck.token_id('<img>'), ck.token_id('</img>'), ck.token_id('<|im_start|>')) == (92544, 92545, 92543)
    # Every added token has an embedding row.
    assert max(int(i) for i in ck.tokenizer['added_tokens']) < ck.vocab_size


def test_towers_as_published():
    q2, q7, iv, ov = (get_checkpoint(n) for n in NAMES)
    assert q2.towers()['vision'] == q7.towers()['vision']            # the same 675M ViT in both sizes
    assert (q2.towers()['language'].hidden_size, q7.towers()['language'].hidden_size) == (1536, 3584)
    assert (iv.towers()['vision'].layers, iv.towers()['language'].layers) == (24, 24)
    assert (ov.towers()['vision'].layers, ov.towers()['language'].hidden_size) == (26, 896)
    assert (q2.tied_embeddings, q7.tied_embeddings, iv.tied_embeddings, ov.tied_embeddings) == (True, False, False, True)


@pytest.mark.parametrize('name', NAMES)
def test_meta_graph_has_the_published_parameter_count(name):
    ck = get_checkpoint(name)
    model = meta_model(ck)
    assert all(p.is_meta for p in model.parameters())
    total = sum(parameter_counts(model).values())
    if ck.checks.get('parameters'):
        assert total == ck.checks['parameters']
    else:                                           # InternVL2.5-2B: the model card's 2.2B
        assert round(total / 1e9, 1) == 2.2


def test_tower_sizes_match_the_component_checkpoints():
    iv = counts('internvl2.5-2b', 'full').total
    assert round(iv['vision'] / 1e6) == 304                 # InternViT-300M-448px-V2_5
    assert round(iv['language'] / 1e9, 2) == 1.89           # internlm2_5-1_8b-chat, 92,553-token vocabulary
    ov = counts('llava-onevision', 'full').total
    assert ov['other'] == 896                                # the image_newline parameter, outside every tower
    q2 = counts('qwen2-vl-2b', 'full').total
    assert q2['vision'] + q2['projector'] == 665_271_296    # Qwen2-VL's 675M-class ViT with its merger


# Per tower: Linear modules that ms-swift's `all-linear` (vit, aligner and llm unfrozen) gives adapters.
EXPECTED_LORA = {
    'qwen2-vl-2b': {'vision': (128, ['attn.proj', 'attn.qkv', 'mlp.fc1', 'mlp.fc2']),
                    'projector': (2, ['model.visual.merger.mlp.0', 'model.visual.merger.mlp.2']),
                    'language': (196, ['mlp.down_proj', 'mlp.gate_proj', 'mlp.up_proj', 'self_attn.k_proj',
                                       'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj'])},
    'internvl2.5-2b': {'vision': (96, ['attn.proj', 'attn.qkv', 'mlp.fc1', 'mlp.fc2']),
                       'projector': (2, ['mlp1.1', 'mlp1.3']),
                       # InternLM2's head is called `output`, which ms-swift's lm_head exclusion does not know.
                       'language': (121, ['attention.wo', 'attention.wqkv', 'feed_forward.w1', 'feed_forward.w2',
                                          'feed_forward.w3', 'language_model.output'])},
    'llava-onevision': {'vision': (156, ['mlp.fc1', 'mlp.fc2', 'self_attn.k_proj', 'self_attn.out_proj',
                                         'self_attn.q_proj', 'self_attn.v_proj']),
                        'projector': (2, ['model.multi_modal_projector.linear_1', 'model.multi_modal_projector.linear_2']),
                        'language': (168, ['mlp.down_proj', 'mlp.gate_proj', 'mlp.up_proj', 'self_attn.k_proj',
                                           'self_attn.o_proj', 'self_attn.q_proj', 'self_attn.v_proj'])},
}
EXPECTED_LORA['qwen2-vl-7b'] = EXPECTED_LORA['qwen2-vl-2b']


@pytest.mark.parametrize('name', NAMES)
def test_lora_all_linear_reaches_every_tower(name):
    c = counts(name, 'lora')
    summary = lora_summary(c)
    assert {t: (s['modules'], s['kinds']) for t, s in summary.items()} == EXPECTED_LORA[name]
    assert all(c.trainable[t] > 0 for t in ('vision', 'projector', 'language'))
    lm_heads = [m for m in c.lora_modules['language'] if m.endswith('lm_head')]
    assert lm_heads == []
    full = counts(name, 'full')
    assert full.trainable == full.total                      # full: every parameter, vision encoder included
    assert c.trainable_params < 0.01 * full.total_params


def test_lora_counts_are_rank_times_in_plus_out():
    c = counts('qwen2-vl-2b', 'lora')
    # One Qwen2-VL-2B decoder layer: q,k,v,o (1536->1536, ->256, ->256, 1536->1536) and the MLP (1536<->8960).
    per_layer = 8 * ((1536 + 1536) + 2 * (1536 + 256) + (1536 + 1536) + 2 * (1536 + 8960) + (8960 + 1536))
    assert c.trainable['language'] == 28 * per_layer
    assert counts('qwen2-vl-2b', 'lora', lora_rank=16).trainable_params == 2 * c.trainable_params
