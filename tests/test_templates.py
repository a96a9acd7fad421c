"""Per family: the visual tokens the real ms-swift template produces equal the policy's prediction."""
import io
import json

import pytest
from PIL import Image

from swift_plugins.resolution.families import Qwen2VL
from swift_plugins.resolution.policy import PolicyError, ResolutionPolicy
from swift_plugins.resolution.templates import TokenMismatchError

from helpers import processor, row

SIZES = [(1000, 700), (300, 200), (90, 60), (400, 900)]






def template(model_dir, model_type, template_type, **kwargs):
    """A fresh template (it reads MEDRES_* when built) around a cached processor."""
    from swift.template import get_template
    return get_template(processor(model_dir, model_type, template_type), template_type=template_type, **kwargs)


FAMILIES = {
    'qwen2_vl': ('tiny_qwen2_vl', 'qwen2_vl', '<|image_pad|>'),
    'internvl_hf': ('tiny_internvl', 'internvl', '<IMG_CONTEXT>'),
    'internvl2_5': ('tiny_internvl', 'internvl', '<IMG_CONTEXT>'),
    'llava_onevision_hf': ('tiny_llava_onevision', 'llava_onevision_hf', '<image>'),
}


@pytest.mark.usefixtures('swift_registered')
@pytest.mark.parametrize('template_type', sorted(FAMILIES))
def test_predicted_tokens_equal_actual(template_type, request, tmp_path, monkeypatch):
    fixture, model_type, token = FAMILIES[template_type]
    model_dir = request.getfixturevalue(fixture)
    log = tmp_path / 'tokens.jsonl'
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(log))
    counts = {}
    for mode, extra in [('native', {}), ('low', {'MEDRES_LOW_PIXELS': '250000'}),
                        ('low', {'MEDRES_LOW_PIXELS': '250000', 'MEDRES_UPSAMPLE_FROM_LOW': '1',
                                 'MEDRES_FILTER': 'bicubic'})]:
        monkeypatch.setenv('MEDRES_RESOLUTION', mode)
        for k, v in extra.items():
            monkeypatch.setenv(k, v)
        t = template(model_dir, model_type, template_type)
        token_id = t.tokenizer.convert_tokens_to_ids(token)
        for i, (w, h) in enumerate(SIZES):
            encoded = t.encode(row(w, h, i))
            actual = sum(1 for x in encoded['input_ids'] if x == token_id)
            family = t.medres_family
            policy = ResolutionPolicy.from_env()
            assert actual == policy.plan(w, h, mode, family).tokens
            counts[(mode, bool(extra.get('MEDRES_UPSAMPLE_FROM_LOW')), w, h)] = actual
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 3 * len(SIZES)
    assert all(r['predicted_tokens'] == r['actual_tokens'] for r in records)
    # Low costs fewer tokens than native on the large image; upsampled-from-low costs native's.
    assert counts[('low', False, 1000, 700)] < counts[('native', False, 1000, 700)]
    assert counts[('low', True, 1000, 700)] == counts[('native', False, 1000, 700)]


@pytest.mark.usefixtures('swift_registered')
def test_without_a_policy_the_template_is_stock(tiny_qwen2_vl):
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    assert t.medres_policy is None
    encoded = t.encode(row(300, 200))
    # Stock Qwen2-VL rounds 300x200 to 308x196: 11x7 tokens (the policy would floor to 280x196).
    assert encoded['image_grid_thw'].tolist() == [[1, 14, 22]]


@pytest.mark.usefixtures('swift_registered')
def test_a_second_resize_is_caught(tiny_qwen2_vl, monkeypatch):
    monkeypatch.setenv('MEDRES_RESOLUTION', 'native')
    # Simulate a knob that fails to hold the processor: it shrinks the image again after the policy.
    monkeypatch.setattr(Qwen2VL, 'knobs', lambda self, sizes: {'max_pixels': 4 * 28 * 28})
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    with pytest.raises(TokenMismatchError, match=r'fx/test/0: qwen2_vl template produced \d+ visual tokens'):
        t.encode(row(300, 200))


@pytest.mark.usefixtures('swift_registered')
def test_global_max_pixels_conflicts_with_a_policy(tiny_qwen2_vl, monkeypatch):
    monkeypatch.setenv('MEDRES_RESOLUTION', 'low')
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl', max_pixels=50000)
    with pytest.raises(PolicyError, match='--max_pixels'):
        t.encode(row(300, 200))


@pytest.mark.usefixtures('swift_registered')
def test_mixed_decisions_follow_the_row_slot(tiny_qwen2_vl, monkeypatch, tmp_path):
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '3136')
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(tmp_path / 'log.jsonl'))
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    decisions = []
    for pos in range(4):
        r = row(300, 200, pos)
        r['chat_template_kwargs']['medres']['mix'] = {'pos': pos, 'n': 4, 'k': 2}
        t.encode(r)
    decisions = [json.loads(line)['decision'] for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert decisions == ['low', 'low', 'native', 'native']


@pytest.mark.usefixtures('swift_registered')
def test_redraw_needs_the_epoch_callback(tiny_qwen2_vl, monkeypatch):
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_MIX_REDRAW', '1')
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    t.set_mode('train')
    r = row(300, 200)
    r['chat_template_kwargs']['medres']['mix'] = {'pos': 0, 'n': 4, 'k': 2}
    with pytest.raises(PolicyError, match='--callbacks medres_epoch'):
        t.encode(r)


@pytest.mark.usefixtures('swift_registered')
def test_redraw_rotates_the_low_half_each_epoch_with_the_callback(tiny_qwen2_vl, monkeypatch, tmp_path):
    from types import SimpleNamespace

    import swift_plugins.resolution.epoch as epoch
    monkeypatch.setattr(epoch, '_STATE', {'epoch': 0, 'active': False})
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_MIX_REDRAW', '1')
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '3136')
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(tmp_path / 'log.jsonl'))
    t = template(tiny_qwen2_vl, 'qwen2_vl', 'qwen2_vl')
    t.set_mode('train')
    args = SimpleNamespace(dataloader_persistent_workers=False, dataloader_num_workers=2)
    cb = epoch.MedresEpochCallback(args, None)
    cb.on_train_begin(args, SimpleNamespace(epoch=0), None)
    for e in (0, 1, 2):
        cb.on_epoch_begin(args, SimpleNamespace(epoch=float(e)), None)
        for pos in range(4):
            r = row(300, 200, pos)
            r['chat_template_kwargs']['medres']['mix'] = {'pos': pos, 'n': 4, 'k': 2}
            t.encode(r)
    decisions = [json.loads(line)['decision'] for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    assert decisions == ['low', 'low', 'native', 'native', 'native', 'native', 'low', 'low',
                         'low', 'low', 'native', 'native']
    persistent = SimpleNamespace(dataloader_persistent_workers=True, dataloader_num_workers=2)
    with pytest.raises(ValueError, match='--dataloader_persistent_workers false'):
        cb.on_train_begin(persistent, SimpleNamespace(epoch=0), None)


def jpeg_row(w, h, i=0):
    buf = io.BytesIO()
    Image.effect_noise((w, h), 60).convert('RGB').save(buf, 'JPEG', quality=90)
    r = row(w, h, i)
    r['images'] = [{'bytes': buf.getvalue(), 'path': None}]
    return r


@pytest.mark.usefixtures('swift_registered')
@pytest.mark.parametrize('template_type', sorted(FAMILIES))
def test_tokens_hold_with_crop_pad_draft_and_the_cache(template_type, request, tmp_path, monkeypatch):
    """Every image-path option keeps predicted == actual: crop/pad alignment (near-grid sizes, at
    native and at low under the budget), reduced-size JPEG decoding (a >= 2x shrink), and cached
    images (each row encoded twice: the second from the cache)."""
    fixture, model_type, token = FAMILIES[template_type]
    model_dir = request.getfixturevalue(fixture)
    log = tmp_path / 'tokens.jsonl'
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(log))
    monkeypatch.setenv('MEDRES_IMAGE_CACHE', str(tmp_path / 'cache'))
    cases = [('native', 'crop', (900, 460)), ('native', 'pad', (1000, 700)), ('low', 'crop', (300, 200)),
             ('low', 'resize', (1200, 900))]   # the last: low 250,000 px from a 1200x900 JPEG is a draft
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '250000')
    for i, (mode, align, (w, h)) in enumerate(cases):
        monkeypatch.setenv('MEDRES_RESOLUTION', mode)
        monkeypatch.setenv('MEDRES_NATIVE_ALIGN', align)
        t = template(model_dir, model_type, template_type)
        token_id = t.tokenizer.convert_tokens_to_ids(token)
        policy = ResolutionPolicy.from_env()
        r = jpeg_row(w, h, i)
        for _ in range(2):
            encoded = t.encode(r)
            assert sum(1 for x in encoded['input_ids'] if x == token_id) == policy.plan(w, h, mode, t.medres_family).tokens
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(r['predicted_tokens'] == r['actual_tokens'] for r in records)
    assert [r['cache_hit'] for r in records] == [[False], [True]] * len(cases)
    if template_type == 'qwen2_vl':   # the family with a 28 px grid aligns each near-grid case
        assert [r['align'][0] for r in records[::2]] == ['crop', 'pad', 'crop', 'resize']
