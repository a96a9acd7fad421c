"""Decoding raw microscopy files: bit depths, layouts, explicit channel mapping, limits."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from swift_plugins.data.channels import WindowAccumulator, decode, decode_rgb, stain_plane
from swift_plugins.data.images import ImageDecodeError
from swift_plugins.data.registry import Channel, RegistryError, load_entry
from swift_plugins.fixtures.raw_sources import twelve_bit_ramp


def mapping(*spec):
    return [Channel(name=n, source=n, index=i, color=c) for n, i, c in spec]


def test_sixteen_bit_tiff_is_windowed_not_clipped(tmp_path):
    ramp = twelve_bit_ramp((64, 80))
    tifffile.imwrite(tmp_path / 'ramp.tif', ramp)
    # What every anchor does with this file: PIL's own conversion saturates all of it.
    assert np.unique(np.asarray(Image.open(tmp_path / 'ramp.tif').convert('RGB'))).tolist() == [255]
    rgb, info = decode_rgb(tmp_path / 'ramp.tif', 'here')
    assert info['dtype'] == 'uint16' and info['window'] == pytest.approx(tuple(np.percentile(ramp, (0.1, 99.9))))
    levels = rgb[..., 0].ravel().astype(int)
    assert len(np.unique(levels)) > 200 and np.all(np.diff(levels) >= 0)
    assert rgb.min() == 0 and rgb.max() == 255


def test_eight_bit_gray_is_kept_and_rgb16_is_windowed_per_channel(tmp_path):
    gray = np.arange(30 * 20, dtype=np.uint8).reshape(20, 30)
    tifffile.imwrite(tmp_path / 'g.tif', gray)
    rgb, info = decode_rgb(tmp_path / 'g.tif', 'here')
    assert info['window'] is None and np.array_equal(rgb[..., 1], gray)

    arr = np.zeros((20, 30, 3), np.uint16)
    arr[..., 0] = np.linspace(1000, 4000, 600).reshape(20, 30)
    arr[..., 1] = arr[..., 0] // 2
    tifffile.imwrite(tmp_path / 'rgb16.tif', arr, photometric='rgb')
    rgb, info = decode_rgb(tmp_path / 'rgb16.tif', 'here')
    # Each channel windowed at its own percentiles, as 16-bit gray: every channel keeps its levels.
    assert info['source'] == 'rgb' and set(info['windows']) == {'red', 'green', 'blue'}
    assert len(np.unique(rgb[..., 0])) > 200 and len(np.unique(rgb[..., 1])) > 200
    assert rgb[..., 2].max() == 0                       # a constant channel maps to 0


def test_rgba_cmyk_and_tinted_stains(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:5, :, 3] = 255                      # tagged RGB + alpha: still four channels, never read as alpha
    tifffile.imwrite(tmp_path / 'rgba.tif', rgba, photometric='rgb', extrasamples=['unassalpha'])
    with pytest.raises(ImageDecodeError, match=r'^here: a 4-plane image .* not read as RGB \+ alpha; .*channel mapping'):
        decode_rgb(tmp_path / 'rgba.tif', 'here')

    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 1:3] = 255                      # magenta + yellow = red
    tifffile.imwrite(tmp_path / 'cmyk.tif', cmyk, photometric='separated')
    rgb, _ = decode_rgb(tmp_path / 'cmyk.tif', 'here')
    assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60 and rgb[..., 2].mean() < 60

    tinted = np.zeros((6, 6, 3), np.uint8)
    tinted[..., 1] = np.arange(36).reshape(6, 6)    # an HPA-style green-tinted stain JPEG/PNG
    Image.fromarray(tinted).save(tmp_path / 'x_green.png')
    plane, dtype = stain_plane(tmp_path / 'x_green.png', 'here')
    assert dtype == 'uint8' and np.array_equal(plane, tinted[..., 1])


def test_multichannel_stacks_need_an_explicit_mapping(tmp_path):
    planes = np.zeros((3, 12, 16), np.uint16)
    for k in range(3):
        planes[k, :, k * 5:(k + 1) * 5] = 3000 + k   # each stain bright in its own band
        planes[k, 0, 0] = 100
    with tifffile.TiffWriter(tmp_path / 'pages.tif') as tif:   # one page per stain
        for p in planes:
            tif.write(p, photometric='minisblack')
    assert decode(tmp_path / 'pages.tif', 'here').kind == 'stack'
    with pytest.raises(ImageDecodeError, match=r'^f\.tif row 2: a 3-plane image \(TIFF 3 pages uint16\) has no RGB meaning'):
        decode_rgb(tmp_path / 'pages.tif', 'f.tif row 2')
    rgb, info = decode_rgb(tmp_path / 'pages.tif', 'here', mapping(('a', 2, 'blue'), ('b', 0, 'red'), ('c', 1, 'green')))
    assert rgb[5, 2, 0] == 255 and rgb[5, 2, 1] == 0            # plane 0 -> red
    assert rgb[5, 7, 1] == 255 and rgb[5, 12, 2] == 255         # plane 1 -> green, plane 2 -> blue
    assert set(info['windows']) == {'a', 'b', 'c'}

    # tifffile tags a plain 4-plane stack as RGB + alpha; with a mapping it is four stains.
    tifffile.imwrite(tmp_path / 'four.tif', np.concatenate([planes, planes[:1]]))
    assert decode(tmp_path / 'four.tif', 'here').kind == 'rgba'
    rgb, _ = decode_rgb(tmp_path / 'four.tif', 'here', mapping(('a', 0, 'red'), ('b', 3, 'none'), ('c', 2, 'blue')))
    assert rgb[5, 2, 0] == 255 and rgb[5, 12, 2] == 255 and rgb[..., 1].max() == 0


def test_size_limit_missing_and_unreadable_tiffs(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / 'big.tif', np.zeros((100, 120), np.uint16))
    with pytest.raises(ImageDecodeError, match=r'image is 120x100 = 12,000 pixels, over the limit of 10,000'):
        decode(tmp_path / 'big.tif', 'here', max_pixels=10000)
    data = (tmp_path / 'big.tif').read_bytes()
    (tmp_path / 'cut.tif').write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageDecodeError, match=r'^row 7: unreadable TIFF'):
        decode(tmp_path / 'cut.tif', 'row 7')
    with pytest.raises(ImageDecodeError, match='image file not found'):
        decode(tmp_path / 'absent.tif', 'here')


def test_window_accumulator_is_exact_over_many_planes():
    rng = np.random.default_rng(3)
    planes = [rng.integers(0, 4096, (30, 40)).astype(np.uint16) for _ in range(4)]
    acc = WindowAccumulator()
    for p in planes:
        acc.add(p)
    expected = np.percentile(np.concatenate([p.ravel() for p in planes]), (0.1, 99.9))
    assert acc.window() == pytest.approx(tuple(expected))
    eight = WindowAccumulator()
    eight.add(np.zeros((4, 4), np.uint8))
    assert eight.window() is None       # 8-bit data is used as stored


@pytest.mark.parametrize('channels, message', [
    ('[{name: a, source: x, color: red}, {name: a, source: y, color: blue}]', 'duplicate channel names'),
    ('[{name: a, source: x, color: none}]', 'every channel has color none'),
    ('[{name: a, source: x, color: purple}]', "'channels.0.color'"),
])
def test_registry_channels_are_validated(tmp_path, channels, message):
    path = tmp_path / 'mine.yaml'
    path.write_text('name: mine\ntitle: t\nmodality: microscopy\ntask: {kind: classification}\nmetric: accuracy\n'
                    'sources: {local: ./p}\nsplits: {test: {hub_split: test}}\ndefault_split: test\nlabels: [a, b]\n'
                    f'channels: {channels}\nnative_size: {{width: 8, height: 8}}\nlicense: x\ncitation: y\n')
    with pytest.raises(RegistryError, match=message):
        load_entry(path)
