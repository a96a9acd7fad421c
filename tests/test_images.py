import io

import numpy as np
import pytest
from PIL import Image

from swift_plugins.data.decode import model_image as decode_to_rgb
from swift_plugins.data.images import ImageDecodeError, window_to_uint8
from swift_plugins.settings import Settings


def encode(im, fmt='PNG', **kw):
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def decoded_array(result):
    data = result.payload
    im = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    assert im.mode in ('RGB', 'L')
    return np.asarray(im.convert('RGB'))


def test_rgb_and_gray_keep_their_bytes():
    rgb = encode(Image.new('RGB', (30, 20), (10, 200, 30)), 'JPEG')
    out = decode_to_rgb(rgb, 'here')
    assert out.payload == rgb and not out.converted and (out.width, out.height) == (30, 20)
    gray = encode(Image.new('L', (7, 9), 77))
    assert decode_to_rgb(gray, 'here').payload == gray


def test_sixteen_bit_is_windowed_not_clipped():
    # 12-bit values: PIL's own RGB conversion clips every one of them to 255.
    arr = np.linspace(300, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    data = encode(Image.fromarray(arr))
    assert np.unique(np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))).tolist() == [255]
    out = decode_to_rgb(data, 'here')
    assert out.converted and out.source_mode == 'I;16'
    rgb = decoded_array(out)
    assert rgb.min() == 0 and rgb.max() == 255
    assert len(np.unique(rgb[..., 0])) > 200          # the gradient survives
    assert np.all(np.diff(rgb[..., 0].ravel().astype(int)) >= 0)  # and stays monotonic


def test_window_to_uint8_handles_constant_and_nan():
    assert window_to_uint8(np.full((3, 3), 7.0)).max() == 0
    out = window_to_uint8(np.array([[0.0, np.nan], [1.0, 2.0]]))
    assert out.dtype == np.uint8 and out[1, 1] == 255


def test_cmyk_palette_and_alpha_are_converted_deliberately():
    cmyk = Image.new('CMYK', (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = decoded_array(decode_to_rgb(encode(cmyk, 'JPEG', quality=95), 'here'))
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60 and out[..., 2].mean() < 60

    pal = Image.new('RGB', (8, 8), (0, 0, 250)).convert('P', palette=Image.Palette.ADAPTIVE, colors=4)
    assert decoded_array(decode_to_rgb(encode(pal), 'here'))[..., 2].mean() > 240

    la = Image.new('LA', (4, 4), (50, 0))  # fully transparent dark pixels
    la.putpixel((0, 0), (50, 255))
    arr = decoded_array(decode_to_rgb(encode(la), 'here'))
    assert tuple(arr[0, 0]) == (50, 50, 50)       # opaque pixel keeps its value
    assert tuple(arr[3, 3]) == (255, 255, 255)    # transparent pixel flattened onto white


def test_corrupt_and_truncated_images_name_where_they_came_from():
    with pytest.raises(ImageDecodeError, match=r'^ds split=test row=3: cannot decode image'):
        decode_to_rgb(b'not an image at all', 'ds split=test row=3')
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), 'JPEG')
    with pytest.raises(ImageDecodeError, match=r'row=4: cannot decode image \(64x64, RGB\)'):
        decode_to_rgb(jpeg[: len(jpeg) // 2], 'row=4')
    with pytest.raises(ImageDecodeError, match='image file not found'):
        decode_to_rgb('/nonexistent/x.png', 'row=5')


def test_pixel_limit_is_deliberate(monkeypatch):
    data = encode(Image.new('RGB', (200, 100)))
    monkeypatch.setenv('MEDRES_MAX_IMAGE_PIXELS', '10000')
    limit = Settings.from_env().max_image_pixels      # read at the boundary, passed explicitly
    with pytest.raises(ImageDecodeError, match=r'200x100 = 20,000 pixels, over the limit of 10,000'):
        decode_to_rgb(data, 'big', max_pixels=limit)
    monkeypatch.setenv('MEDRES_MAX_IMAGE_PIXELS', '30000')
    assert decode_to_rgb(data, 'big', max_pixels=Settings.from_env().max_image_pixels).width == 200


def test_multipage_tiff_is_refused():
    frames = [Image.new('L', (8, 8), v) for v in (10, 20, 30)]
    buf = io.BytesIO()
    frames[0].save(buf, format='TIFF', save_all=True, append_images=frames[1:])
    with pytest.raises(ImageDecodeError, match='a 3-plane image .* needs an explicit channel mapping'):
        decode_to_rgb(buf.getvalue(), 'stack')
