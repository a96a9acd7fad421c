"""The image path of a policy run: crop/pad alignment, reduced-size JPEG decoding, EXIF, the cache."""
import io
import multiprocessing
import os

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from swift_plugins.errors import PolicyError
from swift_plugins.resolution.families import InternVL, LlavaOneVision, Qwen2VL
from swift_plugins.resolution.image_cache import ImageCache, load_policy_image
from swift_plugins.resolution.policy import ResolutionPolicy

QWEN = Qwen2VL()


def photo(w, h, seed=0):
    """Smooth blobs plus fine noise: content whose downscale depends on the filter, not flat."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)
    return Image.fromarray((base + rng.normal(0, 6, base.shape)).clip(0, 255).astype(np.uint8))


def encoded(image, fmt='JPEG', **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def psnr(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return 10 * np.log10(255 ** 2 / max(((a - b) ** 2).mean(), 1e-12))


# --- alignment ----------------------------------------------------------------------------


@pytest.mark.parametrize('w, h', [(2048, 2048), (2048, 1536), (1280, 1024), (750, 400), (113, 122)])
def test_crop_keeps_the_resize_plan_and_every_pixel_value(w, h):
    resize = ResolutionPolicy(mode='native').plan(w, h, 'native', QWEN)
    policy = ResolutionPolicy(mode='native', native_align='crop')
    img = photo(w, h)
    out, plan = policy.apply(img, 'native', QWEN)
    assert (plan.size, plan.tokens) == (resize.size, resize.tokens)   # same tokens as the paper's resize
    assert out.size == plan.size and plan.align == ('resize' if plan.size == (w, h) else 'crop')
    left, top = (w - plan.size[0]) // 2, (h - plan.size[1]) // 2     # centred
    expected = np.asarray(img)[top:top + plan.size[1], left:left + plan.size[0]]
    assert np.array_equal(np.asarray(out), expected)


def test_pad_rounds_up_onto_a_black_canvas_and_keeps_the_image():
    policy = ResolutionPolicy(mode='native', native_align='pad')
    img = photo(1280, 1024)
    out, plan = policy.apply(img, 'native', QWEN)
    assert plan.size == (1288, 1036) and plan.align == 'pad' and plan.tokens == 46 * 37
    arr = np.asarray(out)
    assert np.array_equal(arr[6:6 + 1024, 4:4 + 1280], np.asarray(img))
    assert arr[:6].max() == 0 and arr[:, :4].max() == 0 and arr[-6:].max() == 0 and arr[:, -4:].max() == 0


def test_pad_falls_back_to_crop_above_the_budget_and_alignment_never_replaces_a_shrink():
    # 4000x3000 is exactly the 12 MP native cap: rounding up would exceed it.
    assert ResolutionPolicy(mode='native', native_align='pad').plan(4000, 3000, 'native', QWEN).align == 'crop'
    # Above the cap (or the low budget) the image must shrink: that is always a resize.
    capped = ResolutionPolicy(mode='native', native_align='crop', native_max_pixels=1_000_000)
    assert capped.plan(2048, 1536, 'native', QWEN).align == 'resize'
    low = ResolutionPolicy(mode='low', native_align='crop')
    assert low.plan(2048, 1536, 'low', QWEN).align == 'resize'
    # Under the low budget, low is the image on the grid: alignment applies there too.
    assert low.plan(512, 500, 'low', QWEN).align == 'crop'
    # The upsample-from-low ablation resamples by design.
    up = ResolutionPolicy(mode='low', native_align='crop', upsample_from_low=True)
    assert up.plan(512, 500, 'low', QWEN).align == 'resize'


def test_alignment_moves_a_side_by_less_than_one_token_or_not_at_all():
    crop = ResolutionPolicy(mode='native', native_align='crop')
    # InternVL: 448 px tiles of 16x16 tokens (28 px each). 900x460 -> 896x448 is within a token;
    # 1000x900 -> 896x896 would drop 104 columns: resized instead.
    assert crop.plan(900, 460, 'native', InternVL()).align == 'crop'
    assert crop.plan(1000, 900, 'native', InternVL()).align == 'resize'
    # Anyres has no grid to land on: LLaVA-OneVision always resizes.
    assert crop.plan(768, 768, 'native', LlavaOneVision()).align == 'resize'
    # Smaller than one unit: nothing to crop to, so the upscale; pad puts it on one unit.
    assert crop.plan(10, 20, 'native', QWEN).align == 'resize'
    pad = ResolutionPolicy(mode='native', native_align='pad').plan(10, 20, 'native', QWEN)
    assert (pad.size, pad.align) == ((28, 28), 'pad')


def test_align_and_draft_variables():
    p = ResolutionPolicy(mode='mixed', native_align='pad', jpeg_draft=False)
    assert p.to_env()['MEDRES_NATIVE_ALIGN'] == 'pad' and p.to_env()['MEDRES_JPEG_DRAFT'] == '0'
    assert ResolutionPolicy.from_env(p.to_env()) == p
    assert ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'native', 'MEDRES_NATIVE_ALIGN': 'CROP'}).native_align == 'crop'
    assert ResolutionPolicy(mode='native').native_align == 'resize'   # the paper resized
    assert ResolutionPolicy(mode='low').to_env(mode_fields_only=True)['MEDRES_JPEG_DRAFT'] == '1'
    with pytest.raises(PolicyError, match="MEDRES_NATIVE_ALIGN must be one of .* got 'trim'"):
        ResolutionPolicy.from_env({'MEDRES_RESOLUTION': 'native', 'MEDRES_NATIVE_ALIGN': 'trim'})


# --- reduced-size JPEG decoding ----------------------------------------------------------


def test_low_decodes_a_large_jpeg_at_reduced_size_close_to_the_full_decode(monkeypatch):
    data = encoded(photo(1600, 1200), quality=92)
    policy = ResolutionPolicy(mode='low', low_pixels=300 * 225)
    drafted = []
    real_draft = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, 'draft', lambda self, mode, size: drafted.append(
        (self.size, real_draft(self, mode, size))) or drafted[-1][1])
    out, plan, hit = load_policy_image(data, policy, 'low', QWEN)
    assert hit is None and out.size == plan.size == QWEN.fit(1600, 1200, 300 * 225) and out.mode == 'RGB'
    assert drafted and drafted[0][1] is not None                  # libjpeg scaled the decode
    full, _ = ResolutionPolicy(mode='low', low_pixels=300 * 225, jpeg_draft=False).apply(
        Image.open(io.BytesIO(data)), 'low', QWEN)
    assert not np.array_equal(np.asarray(out), np.asarray(full))   # a different route ...
    assert psnr(out, full) > 40                                    # ... to practically the same pixels


def test_no_draft_under_a_2x_shrink_nor_for_png_nor_when_off():
    policy = ResolutionPolicy(mode='low', low_pixels=1000 * 700)
    jpg = encoded(photo(1200, 900))
    out, plan, _ = load_policy_image(jpg, policy, 'low', QWEN)
    assert np.array_equal(np.asarray(out), np.asarray(policy.apply(Image.open(io.BytesIO(jpg)).convert('RGB'),
                                                                   'low', QWEN)[0]))
    small = ResolutionPolicy(mode='low', low_pixels=300 * 225)
    png = encoded(photo(1200, 900), 'PNG')
    out, plan, _ = load_policy_image(png, small, 'low', QWEN)
    ref, _ = small.apply(Image.open(io.BytesIO(png)).convert('RGB'), 'low', QWEN)
    assert np.array_equal(np.asarray(out), np.asarray(ref))
    off = ResolutionPolicy(mode='low', low_pixels=300 * 225, jpeg_draft=False)
    jpg = encoded(photo(1600, 1200))
    out, _, _ = load_policy_image(jpg, off, 'low', QWEN)
    assert np.array_equal(np.asarray(out), np.asarray(off.apply(Image.open(io.BytesIO(jpg)), 'low', QWEN)[0]))


def test_exif_orientation_is_applied_before_planning():
    img = photo(640, 400)                       # stored landscape, EXIF says rotate 90: shown portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(img, exif=exif.tobytes(), quality=95)
    policy = ResolutionPolicy(mode='low', low_pixels=150 * 240)
    out, plan, _ = load_policy_image(data, policy, 'low', QWEN)
    assert plan.source == (400, 640) and out.size == plan.size and out.height > out.width
    gray = encoded(Image.new('L', (300, 200), 77))
    out, _, _ = load_policy_image(gray, ResolutionPolicy(mode='native'), 'native', QWEN)
    assert out.mode == 'RGB'


# --- the cache ---------------------------------------------------------------------------


def test_cache_returns_the_same_pixels_and_keys_on_what_shapes_them(tmp_path):
    cache = ImageCache(tmp_path / 'c', max_bytes=10**9)
    data = encoded(photo(1600, 1200))
    policy = ResolutionPolicy(mode='low', low_pixels=400 * 300)
    first, plan, hit1 = load_policy_image(data, policy, 'low', QWEN, cache)
    again, plan2, hit2 = load_policy_image(data, policy, 'low', QWEN, cache)
    assert (hit1, hit2) == (False, True) and plan == plan2
    assert np.array_equal(np.asarray(first), np.asarray(again)) and again.mode == 'RGB'
    # Another filter, plan, alignment or source: another entry.
    for other in (ResolutionPolicy(mode='low', low_pixels=400 * 300, filter='bicubic'),
                  ResolutionPolicy(mode='low', low_pixels=500 * 300)):
        assert load_policy_image(data, other, 'low', QWEN, cache)[2] is False
    assert load_policy_image(encoded(photo(1600, 1200, seed=1)), policy, 'low', QWEN, cache)[2] is False
    assert load_policy_image(data, policy, 'native', QWEN, cache)[2] is False
    assert (cache.hits, cache.misses) == (1, 5)
    assert not list(tmp_path.rglob('.tmp-*'))


def test_cache_stays_within_its_bound_dropping_the_oldest(tmp_path):
    img = photo(100, 100)                  # 30 kB per entry
    cache = ImageCache(tmp_path, max_bytes=100_000)
    for i in range(10):
        key = f'{i:02d}' + 'a' * 38
        cache.put(key, img)
        os.utime(cache._path(key), ns=(i * 10**9, i * 10**9))   # strictly ordered ages
    assert cache.size_bytes() <= 100_000
    assert cache.get('09' + 'a' * 38) is not None and cache.get('00' + 'a' * 38) is None


def _writer(args):
    root, worker = args
    cache = ImageCache(root, max_bytes=10**9)
    data = encoded(photo(400, 300, seed=0))
    policy = ResolutionPolicy(mode='low', low_pixels=200 * 150)
    out = []
    for _ in range(5):
        img, _, _ = load_policy_image(data, policy, 'low', QWEN, cache)
        out.append(np.asarray(img).tobytes())
    return out


def test_cache_is_safe_with_several_worker_processes(tmp_path):
    with multiprocessing.get_context('fork').Pool(4) as pool:
        results = pool.map(_writer, [(tmp_path, w) for w in range(4)])
    flat = {b for r in results for b in r}
    assert len(flat) == 1                            # every worker read whole, identical entries
    assert len(list(tmp_path.rglob('*.npy'))) == 1 and not list(tmp_path.rglob('.tmp-*'))
