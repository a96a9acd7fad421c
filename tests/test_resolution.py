"""The resolution policy: sizes, filters, upsampling and the deterministic balanced mix."""

import numpy as np
import pytest
from PIL import Image

from swift_plugins.resolution.families import InternVL, LlavaOneVision, Qwen2VL, get_family
from swift_plugins.resolution.mixing import MixSlot, QuotaBook, iid_is_low, mix_slots
from swift_plugins.resolution.policy import RESAMPLE as FILTERS
from swift_plugins.resolution.policy import PolicyError, ResolutionPolicy
from swift_plugins.vocabulary import PAPER_LOW_PIXELS

QWEN = Qwen2VL()


def test_defaults_are_the_papers():
    p = ResolutionPolicy(mode='mixed')
    assert p.low_pixels == 1280 * 28 * 28 == 1_003_520
    assert p.native_max_pixels == 12_000_000
    assert (p.mix_ratio, p.filter, p.balance) == (0.5, 'lanczos', 'modality')


def test_env_round_trip_and_errors_name_the_variable():
    p = ResolutionPolicy(mode='mixed', low_pixels=5000, mix_ratio=0.3, seed=7, balance='dataset',
                         redraw=True, filter='bicubic', upsample_from_low=True)
    assert ResolutionPolicy.from_env(p.to_env()) == p
    assert ResolutionPolicy.from_env({}) is None
    assert ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'off'}) is None
    with pytest.raises(PolicyError, match='MEDRES_RESOLUTION must be one of'):
        ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'high'})
    with pytest.raises(PolicyError, match="MEDRES_LOW_PIXELS='lots' is not a valid"):
        ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'low', 'MEDRES_LOW_PIXELS': 'lots'})
    with pytest.raises(PolicyError, match='MEDRES_MIX_RATIO must be in'):
        ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'mixed', 'MEDRES_MIX_RATIO': '1.5'})
    with pytest.raises(PolicyError, match='MEDRES_FILTER must be one of'):
        ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'low', 'MEDRES_FILTER': 'cubic'})


@pytest.mark.parametrize('w, h', [(2048, 2048), (1280, 1024), (2048, 1536), (750, 400), (113, 122), (29, 3000)])
def test_native_is_aligned_never_upscaled_and_capped(w, h):
    plan = ResolutionPolicy(mode='native').plan(w, h, 'native', QWEN)
    pw, ph = plan.size
    assert pw % 28 == 0 and ph % 28 == 0
    assert pw <= max(w, 28) and ph <= max(h, 28)
    assert w - pw < 28 and h - ph < 28          # nothing but the alignment is lost
    assert plan.tokens == (pw // 28) * (ph // 28)
    capped = ResolutionPolicy(mode='native', native_max_pixels=500_000).plan(w, h, 'native', QWEN)
    assert capped.size[0] * capped.size[1] <= max(500_000, 28 * 28 * max(1, min(w, h) // 28))


@pytest.mark.parametrize('w, h', [(2048, 2048), (1280, 1024), (2048, 1536), (4000, 3000)])
def test_low_budget_keeps_aspect_and_stays_under_budget(w, h):
    plan = ResolutionPolicy(mode='low').plan(w, h, 'low', QWEN)
    lw, lh = plan.size
    assert lw * lh <= PAPER_LOW_PIXELS
    assert lw * lh > 0.85 * PAPER_LOW_PIXELS                 # uses the budget, not far below it
    assert abs(lw / lh - w / h) / (w / h) < 0.05             # aspect ratio kept up to alignment
    assert plan.tokens == lw * lh // (28 * 28) <= 1280


def test_low_as_scale_factor_and_small_images_untouched():
    plan = ResolutionPolicy(mode='low', low_scale=0.5).plan(1280, 1024, 'low', QWEN)
    assert plan.size == (616, 504)                           # 640x512 floored to the 28 grid
    small = ResolutionPolicy(mode='low').plan(300, 200, 'low', QWEN)
    assert small.size == ResolutionPolicy(mode='native').plan(300, 200, 'native', QWEN).size


def test_image_smaller_than_one_unit_is_upscaled_to_the_family_minimum():
    assert ResolutionPolicy(mode='native').plan(10, 20, 'native', QWEN).size == (28, 28)
    assert ResolutionPolicy(mode='native').plan(10, 20, 'native', InternVL()).size == (448, 448)


def _stripes(w=256, h=256):
    x = np.indices((h, w)).sum(axis=0) % 2 * 200 + 20   # 1-px checkerboard: all high frequency
    return Image.fromarray(np.stack([x] * 3, -1).astype(np.uint8))


@pytest.mark.parametrize('name', sorted(FILTERS))
def test_each_filter_is_used(name):
    img = _stripes()
    policy = ResolutionPolicy(mode='low', low_pixels=56 * 56, filter=name)
    out, plan = policy.apply(img, 'low', QWEN)
    assert out.size == plan.size == (56, 56)
    assert np.array_equal(np.asarray(out), np.asarray(img.resize((56, 56), FILTERS[name])))
    values = set(np.unique(np.asarray(out)).tolist())
    if name == 'nearest':
        assert values <= {20, 220}            # picks source pixels only
    else:
        assert values - {20, 220}             # averages into new grey levels


def test_upsample_from_low_returns_native_size_without_the_detail():
    img = _stripes(280, 280)
    policy = ResolutionPolicy(mode='low', low_pixels=56 * 56, upsample_from_low=True)
    out, plan = policy.apply(img, 'low', QWEN)
    assert plan.size == (280, 280) and plan.via == (56, 56)
    assert plan.tokens == ResolutionPolicy(mode='native').plan(280, 280, 'native', QWEN).tokens == 100
    native = np.asarray(img, dtype=float)[..., 0]
    back = np.asarray(out, dtype=float)[..., 0]
    assert native.std() > 90 and back.std() < 10     # same tokens, the fine pattern is gone


def ids(name, n):
    return [f'{name}/train/{i}' for i in range(n)]


def test_mix_is_deterministic_from_seed_and_id():
    a = mix_slots(ids('x', 101), seed=1, p=0.5, group=('g',), member='x', book=QuotaBook())
    b = mix_slots(ids('x', 101), seed=1, p=0.5, group=('g',), member='x', book=QuotaBook())
    c = mix_slots(ids('x', 101), seed=2, p=0.5, group=('g',), member='x', book=QuotaBook())
    assert [s.is_low() for s in a] == [s.is_low() for s in b] != [s.is_low() for s in c]
    assert sum(s.is_low() for s in a) == 51                  # round-half-up of 50.5


def test_balance_is_exact_within_a_modality_across_datasets():
    book = QuotaBook()
    # Two radiology datasets of odd size: separate rounding would give 2 + 2 of 10; cumulative gives 5.
    rad_a = mix_slots(ids('a', 5), seed=0, p=0.5, group=('modality', 'radiology'), member='a', book=book)
    rad_b = mix_slots(ids('b', 5), seed=0, p=0.5, group=('modality', 'radiology'), member='b', book=book)
    path = mix_slots(ids('c', 7), seed=0, p=0.5, group=('modality', 'pathology'), member='c', book=book)
    assert sum(s.is_low() for s in rad_a + rad_b) == 5
    assert sum(s.is_low() for s in path) == 4
    # Re-loading a split in the same process reuses its quota instead of booking it twice.
    again = mix_slots(ids('a', 5), seed=0, p=0.5, group=('modality', 'radiology'), member='a', book=book)
    assert [s.is_low() for s in again] == [s.is_low() for s in rad_a]


@pytest.mark.parametrize('p', [0.0, 0.25, 0.5, 0.8, 1.0])
def test_every_epoch_has_exactly_the_quota_and_redraws_rotate(p):
    slots = mix_slots(ids('x', 40), seed=3, p=p, group=('g',), member='x', book=QuotaBook())
    k = round(40 * p)
    per_epoch = [[s.is_low(e) for s in slots] for e in range(4)]
    assert all(sum(e) == k for e in per_epoch)
    if 0 < p < 1:
        assert per_epoch[0] != per_epoch[1]
    if p == 0.5:
        assert all(a != b for a, b in zip(per_epoch[0], per_epoch[1]))  # each sample alternates


def test_unbalanced_draw_is_iid_at_the_ratio():
    lows = [iid_is_low(f'x/{i}', seed=0, p=0.3) for i in range(20000)]
    assert abs(np.mean(lows) - 0.3) < 0.015
    assert lows == [iid_is_low(f'x/{i}', seed=0, p=0.3) for i in range(20000)]


def test_decide_uses_slot_then_falls_back():
    p = ResolutionPolicy(mode='mixed')
    assert p.decide('a', MixSlot(0, 4, 2)) == 'low' and p.decide('a', MixSlot(3, 4, 2)) == 'native'
    assert p.decide('a', MixSlot(3, 4, 2), epoch=1) == 'low'
    assert ResolutionPolicy(mode='low').decide(None, None) == 'low'
    with pytest.raises(PolicyError, match='needs a sample id'):
        p.decide(None, None)


def test_internvl_tiles_follow_its_aspect_rule():
    f = InternVL()
    assert f.fit(2048, 1536, 12e6) == (4 * 448, 3 * 448)      # 16-tile budget, 4:3 grid
    assert f.tokens((4 * 448, 3 * 448)) == (12 + 1) * 256      # + thumbnail
    assert f.fit(2048, 1536, PAPER_LOW_PIXELS) == (2 * 448, 2 * 448)  # 5-tile budget: 2x2 is closest
    assert f.tokens((448, 448)) == 256                         # one tile, no thumbnail
    assert f.knobs([(4 * 448, 3 * 448)]) == {'max_num': 12}


def test_llava_onevision_matches_transformers_anyres_formula():
    from transformers.image_processing_utils import select_best_resolution
    f = LlavaOneVision()
    for w, h in [(1024, 768), (2048, 2048), (640, 480), (300, 1200), (1003, 1000)]:
        ph, pw = select_best_resolution((h, w), f.pinpoints)
        assert f.best_resolution(w, h) == (ph, pw)
        fw, fh = f.fit(w, h, None)
        assert (fw == pw or fh == ph) and fw <= pw and fh <= ph
        assert f.best_resolution(fw, fh) == (ph, pw)           # the fitted size keeps its pinpoint


def test_get_family_by_name_or_template():
    assert isinstance(get_family('internvl_hf'), InternVL)
    assert isinstance(get_family('qwen2_5_vl'), Qwen2VL)
    with pytest.raises(ValueError, match='unknown model family'):
        get_family('blip')
