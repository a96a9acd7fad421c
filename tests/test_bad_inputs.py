"""The catalogue of awkward inputs: every case is converted correctly or refused with a `MedresError`
naming its file and row; none is silently altered, none ends in a raw traceback.

Images (the one image path): each case is decoded as `swift sft` / `swift infer` hand it to the
model (`decode.model_image`, opened back as ms-swift opens it), and the same file must get the same
outcome from `medres tokens` (full and, where a header shows it, headers only) and from `medres
prepare`'s decoder. Registry files, jsonl rows (through ms-swift's own `load_dataset`), prediction
files (`medres score`), `medres tokens` and `medres prepare` follow.
"""
from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from swift_plugins.data.channels import decode_rgb
from swift_plugins.data.decode import model_image, model_size
from swift_plugins.data.registry import Channel
from swift_plugins.data.sizes import Measure
from swift_plugins.errors import MedresError
from swift_plugins.resolution.families import InternVL, Qwen2VL
from swift_plugins.resolution.policy import ResolutionPolicy

WHERE = 'medres/cat split=train row=7'


# ---------------------------------------------------------------------------- image builders

def save(im: Image.Image, path: Path, fmt: str, **kw) -> Path:
    im.save(path, format=fmt, **kw)
    return path


def ramp16(h=48, w=64, lo=300, hi=4000) -> np.ndarray:
    """12-bit data in a 16-bit container: PIL's 8-bit view of it has at most 16 levels."""
    return np.linspace(lo, hi, h * w).reshape(h, w).astype(np.uint16)


def rgb16(h=48, w=64) -> np.ndarray:
    base = ramp16(h, w)
    return np.stack([base, base // 2 + 100, 4095 - base], axis=-1).astype(np.uint16)


def marked(w=40, h=20) -> Image.Image:
    """RGB with a red block at the top-left corner, to see where orientation puts it."""
    arr = np.full((h, w, 3), 60, np.uint8)
    arr[:6, :6] = (250, 0, 0)
    return Image.fromarray(arr)


def exif_jpeg(tmp: Path, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(marked(), tmp / f'exif{orientation}.jpg', 'JPEG', quality=95, exif=exif.tobytes())


def dicom(name: str) -> Path:
    from pydicom.data import get_testdata_file
    return Path(get_testdata_file(name))


def monochrome1(tmp: Path) -> Path:
    import pydicom
    ds = pydicom.dcmread(dicom('MR_small.dcm'))
    ds.PhotometricInterpretation = 'MONOCHROME1'
    ds.save_as(tmp / 'mono1.dcm')
    return tmp / 'mono1.dcm'


def multipage(tmp: Path) -> Path:
    with tifffile.TiffWriter(tmp / 'pages.tif') as tif:
        for k in range(3):
            tif.write(np.full((16, 16), 1000 * (k + 1), np.uint16), photometric='minisblack')
    return tmp / 'pages.tif'


def animated(tmp: Path, fmt: str) -> Path:
    frames = [Image.new('RGB', (12, 12), (30 * k, 0, 0)) for k in range(3)]
    path = tmp / f'anim.{fmt.lower()}'
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=50)
    return path


def truncated(tmp: Path, fmt: str) -> Path:
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(data, format=fmt)
    path = tmp / f'cut.{fmt.lower()}'
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    return path


def rgba_png(tmp: Path) -> Path:
    arr = np.zeros((10, 10, 4), np.uint8)
    arr[..., 0] = 200
    arr[:5, :, 3] = 255
    return save(Image.fromarray(arr, 'RGBA'), tmp / 'rgba.png', 'PNG')


def rgba16_png(tmp: Path) -> Path:
    import imagecodecs
    arr = np.zeros((10, 10, 4), np.uint16)
    arr[..., 0] = np.arange(100, dtype=np.uint16).reshape(10, 10) * 40
    arr[:5, :, 3] = 65535
    (tmp / 'rgba16.png').write_bytes(imagecodecs.png_encode(arr))
    return tmp / 'rgba16.png'


def png16_rgb(tmp: Path) -> Path:
    import imagecodecs
    (tmp / 'rgb16.png').write_bytes(imagecodecs.png_encode(rgb16()))
    return tmp / 'rgb16.png'


def palette_transparent(tmp: Path) -> Path:
    im = Image.new('P', (8, 8), 1)
    im.putpalette([0, 0, 0, 0, 0, 250] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.info['transparency'] = 0
    return save(im, tmp / 'pal.png', 'PNG', transparency=0)


def tiff_oriented(tmp: Path) -> Path:
    tifffile.imwrite(tmp / 'orient.tif', np.asarray(marked()), photometric='rgb', extratags=[(274, 'H', 1, 6, True)])
    return tmp / 'orient.tif'


# ---------------------------------------------------------------------------- image checks

def gray_levels(min_levels=200):
    def check(rgb, path):
        assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
        assert len(np.unique(rgb[..., 0])) >= min_levels and rgb.min() == 0 and rgb.max() == 255
    return check


def every_channel_deep(rgb, path):
    for c in range(3):   # each channel windowed on its own: far more than PIL's 16 high-byte levels
        assert len(np.unique(rgb[..., c])) > 200 and rgb[..., c].max() == 255, c


def same_as_pil_oriented(rgb, path):
    ref = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
    assert rgb.shape == ref.shape and np.abs(rgb.astype(int) - ref).max() <= 1


def rotated_clockwise(rgb, path):
    same_as_pil_oriented(rgb, path)
    assert rgb[:6, -6:, 0].mean() > 200 and rgb[:6, :6, 0].mean() < 100    # the top-left block is now top-right


def flattened_on_white(rgb, path):
    assert rgb[0, 0, 0] >= 150 and tuple(rgb[9, 9]) == (255, 255, 255)


def red_dominant(rgb, path):
    assert rgb[..., 0].mean() > 200 and rgb[..., 1].mean() < 60 and rgb[..., 2].mean() < 60


def dicom_voi_matches_pydicom(rgb, path):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(float)
    lo = 0 if ds.PixelRepresentation == 0 else -(2 ** (ds.BitsStored - 1))
    y = (values - lo) / (2 ** ds.BitsStored - 1) * 255
    if ds.PhotometricInterpretation == 'MONOCHROME1':
        y = 255 - y
    assert np.abs(rgb[..., 0].astype(float) - y).max() <= 1.01


def dicom_hu_percentile(rgb, path):
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from swift_plugins.data.images import window_to_uint8
    ds = pydicom.dcmread(path)
    assert ds.RescaleIntercept == -1024                   # stored values -> Hounsfield units
    assert np.array_equal(rgb[..., 0], window_to_uint8(apply_modality_lut(ds.pixel_array, ds).astype(float)))


def inverted_mr(rgb, path):
    plain, _ = decode_rgb(dicom('MR_small.dcm'), 'x')
    assert np.array_equal(rgb, 255 - plain)


def rgb_red_corner(rgb, path):
    assert rgb[0, 0, 0] >= 250 and rgb[0, 0, 1] <= 5 and rgb[-1, -1].min() >= 250


def composed_from_planes(rgb, path):
    assert rgb[..., 0].max() == 255 and rgb[..., 2].max() == 255 and rgb[..., 1].max() == 0


def padded_on_black(rgb, path):
    h, w = rgb.shape[:2]
    assert max(w, h) / min(w, h) <= 200 and rgb[0].max() == 0 and rgb[-1].max() == 0


@dataclass
class Case:
    build: Callable[[Path], object]          # tmp folder -> path or bytes
    refused: Optional[str] = None            # regex the error message must match; None: converted
    size: Optional[tuple[int, int]] = None   # (width, height) the model gets
    kept: Optional[bool] = None              # original bytes handed to ms-swift
    check: Optional[Callable] = None         # on the decoded (H, W, 3) uint8
    header_refuses: bool = True              # a refusal `medres tokens --headers-only` sees too
    family: object = None
    policy: object = None
    pad: bool = False
    channels: object = None
    max_pixels: int = 178_956_970


FOUR_STAINS = (Channel(name='a', index=0, color='red'), Channel(name='b', index=1, color='none'),
               Channel(name='c', index=2, color='blue'), Channel(name='d', index=3, color='none'))


def four_planes(tmp: Path) -> Path:
    planes = np.zeros((4, 12, 16), np.uint16)
    for k in range(4):
        planes[k, :, 4 * k:4 * k + 4] = 3000 + 500 * k
    tifffile.imwrite(tmp / 'four.tif', planes)
    return tmp / 'four.tif'


IMAGE_CASES = {
    # 8-bit images PIL reads exactly: the bytes go to ms-swift unchanged
    'jpeg rgb 8-bit': Case(lambda t: save(marked(), t / 'a.jpg', 'JPEG'), size=(40, 20), kept=True),
    'png gray 8-bit': Case(lambda t: save(Image.new('L', (7, 9), 77), t / 'g.png', 'PNG'), size=(7, 9), kept=True),
    'bmp rgb': Case(lambda t: save(marked(), t / 'a.bmp', 'BMP'), size=(40, 20), kept=True),
    'webp rgb lossless': Case(lambda t: save(marked(), t / 'a.webp', 'WEBP', lossless=True), size=(40, 20), kept=True),
    'gif single frame': Case(lambda t: save(marked().convert('P'), t / 'a.gif', 'GIF'), size=(40, 20), kept=False),
    'png 1-bit': Case(lambda t: save(Image.new('1', (9, 5), 1), t / 'b.png', 'PNG'), size=(9, 5),
                      check=lambda rgb, p: rgb.min() == 255),
    'png 1x1': Case(lambda t: save(Image.new('RGB', (1, 1), (1, 2, 3)), t / 'one.png', 'PNG'), size=(1, 1), kept=True),
    # deeper than 8 bits: windowed per channel, never clipped or cut to the high byte
    'png gray 16-bit (12-bit data)': Case(lambda t: save(Image.fromarray(ramp16()), t / 'g16.png', 'PNG'),
                                          size=(64, 48), kept=False, check=gray_levels()),
    'tiff gray 16-bit': Case(lambda t: tifffile.imwrite(t / 'g16.tif', ramp16()) or t / 'g16.tif', size=(64, 48),
                             check=gray_levels()),
    'tiff rgb 16-bit contiguous': Case(lambda t: tifffile.imwrite(t / 'c.tif', rgb16(), photometric='rgb') or t / 'c.tif',
                                       size=(64, 48), check=every_channel_deep),
    'tiff rgb 16-bit planar': Case(lambda t: tifffile.imwrite(t / 'p.tif', np.moveaxis(rgb16(), -1, 0), photometric='rgb',
                                                              planarconfig='separate') or t / 'p.tif',
                                   size=(64, 48), check=every_channel_deep),
    'png rgb 16-bit': Case(png16_rgb, size=(64, 48), check=every_channel_deep),
    'png rgba 16-bit': Case(rgba16_png, size=(10, 10), check=lambda rgb, p: tuple(rgb[9, 9]) == (255, 255, 255)),
    'tiff float32 with nan and inf': Case(lambda t: tifffile.imwrite(t / 'f.tif', np.where(
        np.eye(8, dtype=bool), np.nan, np.arange(64, dtype=np.float32).reshape(8, 8))) or t / 'f.tif', size=(8, 8),
        check=lambda rgb, p: rgb.max() == 255),
    'tiff int16 negative values': Case(lambda t: tifffile.imwrite(t / 's.tif', (ramp16().astype(np.int16) - 2000)) or
                                       t / 's.tif', size=(64, 48), check=gray_levels()),
    'tiff bool': Case(lambda t: tifffile.imwrite(t / 'b.tif', np.eye(6, dtype=bool)) or t / 'b.tif', size=(6, 6),
                      check=lambda rgb, p: rgb[0, 0, 0] == 255 and rgb[0, 1, 0] == 0),
    'png 16-bit constant': Case(lambda t: save(Image.fromarray(np.full((5, 5), 900, np.uint16)), t / 'k.png', 'PNG'),
                                size=(5, 5), check=lambda rgb, p: rgb.max() == 0),
    # colour models and alpha, converted deliberately
    'jpeg cmyk': Case(lambda t: save(Image.new('CMYK', (8, 8), (0, 255, 255, 0)), t / 'k.jpg', 'JPEG', quality=95),
                      size=(8, 8), kept=False, check=red_dominant),
    'tiff cmyk': Case(lambda t: tifffile.imwrite(t / 'k.tif', np.dstack([np.zeros((8, 8, 1), np.uint8),
                                                                         np.full((8, 8, 2), 255, np.uint8),
                                                                         np.zeros((8, 8, 1), np.uint8)]),
                                                 photometric='separated') or t / 'k.tif', size=(8, 8), check=red_dominant),
    'png rgba': Case(rgba_png, size=(10, 10), kept=False, check=flattened_on_white),
    'png gray + alpha': Case(lambda t: save(Image.new('LA', (4, 4), (50, 0)), t / 'la.png', 'PNG'), size=(4, 4),
                             check=lambda rgb, p: tuple(rgb[3, 3]) == (255, 255, 255)),
    'png palette with transparency': Case(palette_transparent, size=(8, 8),
                                          check=lambda rgb, p: tuple(rgb[0, 0]) == (255, 255, 255) and rgb[4, 4, 2] == 250),
    # four or more channels: never RGB + alpha; an explicit mapping composes them
    'tiff 4-plane uint16': Case(four_planes, refused=r'a 4-plane image .*not read as RGB \+ alpha.*channel mapping'),
    'tiff 4-plane uint16 with a mapping': Case(four_planes, size=(16, 12), channels=FOUR_STAINS, check=composed_from_planes),
    'tiff rgba 8-bit tagged alpha': Case(lambda t: tifffile.imwrite(t / 'a.tif', np.full((6, 6, 4), 90, np.uint8),
                                                                    photometric='rgb', extrasamples=['unassalpha'])
                                         or t / 'a.tif', refused=r'a 4-plane image .*channel mapping'),
    'tiff 2 samples': Case(lambda t: tifffile.imwrite(t / 'two.tif', np.zeros((6, 6, 2), np.uint8), photometric='minisblack',
                                                      planarconfig='contig') or t / 'two.tif',
                           refused=r'a 2-plane image .*channel mapping'),
    'tiff 3 pages of stains': Case(multipage, refused=r'a 3-plane image .*channel mapping'),
    # orientation: the image as a viewer shows it
    'jpeg exif orientation 6': Case(lambda t: exif_jpeg(t, 6), size=(20, 40), kept=False, check=rotated_clockwise),
    'jpeg exif orientation 3': Case(lambda t: exif_jpeg(t, 3), size=(40, 20), kept=False, check=same_as_pil_oriented),
    'jpeg exif orientation 8': Case(lambda t: exif_jpeg(t, 8), size=(20, 40), check=same_as_pil_oriented),
    'jpeg exif orientation 2 (mirrored)': Case(lambda t: exif_jpeg(t, 2), size=(40, 20), check=same_as_pil_oriented),
    'jpeg exif orientation 5': Case(lambda t: exif_jpeg(t, 5), size=(20, 40), check=same_as_pil_oriented),
    'jpeg exif orientation 7': Case(lambda t: exif_jpeg(t, 7), size=(20, 40), check=same_as_pil_oriented),
    'tiff orientation tag 6': Case(tiff_oriented, size=(20, 40), check=rotated_clockwise),
    # unreadable, incomplete or ambiguous files
    'jpeg truncated': Case(lambda t: truncated(t, 'JPEG'), refused=r'cannot decode image', header_refuses=False),
    'png truncated': Case(lambda t: truncated(t, 'PNG'), refused=r'cannot decode image', header_refuses=False),
    'not an image': Case(lambda t: (t / 'x.png').write_bytes(b'hello, not an image') and t / 'x.png',
                         refused=r'cannot (decode image|read the image header)'),
    'empty file': Case(lambda t: (t / 'e.png').write_bytes(b'') or t / 'e.png', refused=r'image file is empty'),
    'missing file': Case(lambda t: t / 'absent.png', refused=r'image file not found'),
    'gif animated': Case(lambda t: animated(t, 'GIF'), refused=r'animated GIF \(3 frames\)'),
    'png animated (apng)': Case(lambda t: animated(t, 'PNG'), refused=r'animated PNG \(3 frames\)'),
    'over the pixel limit': Case(lambda t: save(Image.new('RGB', (200, 100)), t / 'big.png', 'PNG'), max_pixels=10_000,
                                 refused=r'200x100 = 20,000 pixels, over the limit of 10,000'),
    'tiff over the pixel limit': Case(lambda t: tifffile.imwrite(t / 'big.tif', np.zeros((100, 120), np.uint16)) or
                                      t / 'big.tif', max_pixels=10_000, refused=r'120x100 = 12,000 pixels'),
    'bytes payload (parquet row)': Case(lambda t: (t / 'x').write_bytes(b'') or _jpeg_bytes(), size=(40, 20), kept=True),
    # DICOM, with pydicom's own test files
    'dicom ct (rescale to HU, no window)': Case(lambda t: dicom('CT_small.dcm'), size=(128, 128), check=dicom_hu_percentile),
    'dicom mr (window in the file)': Case(lambda t: dicom('MR_small.dcm'), size=(64, 64), check=dicom_voi_matches_pydicom),
    'dicom mr implicit vr': Case(lambda t: dicom('MR_small_implicit.dcm'), size=(64, 64), check=dicom_voi_matches_pydicom),
    'dicom mr big endian': Case(lambda t: dicom('MR_small_bigendian.dcm'), size=(64, 64), check=dicom_voi_matches_pydicom),
    'dicom mr rle': Case(lambda t: dicom('MR_small_RLE.dcm'), size=(64, 64), check=dicom_voi_matches_pydicom),
    'dicom monochrome1': Case(monochrome1, size=(64, 64), check=inverted_mr),
    'dicom rgb (rle)': Case(lambda t: dicom('SC_rgb_rle.dcm'), size=(100, 100), check=rgb_red_corner),
    'dicom ybr jpeg': Case(lambda t: dicom('SC_rgb_jpeg_dcmtk.dcm'), size=(100, 100), check=rgb_red_corner),
    'dicom palette colour': Case(lambda t: dicom('examples_palette.dcm'), size=(800, 350)),
    'dicom deflated': Case(lambda t: dicom('image_dfl.dcm'), size=(512, 512)),
    'dicom as bytes': Case(lambda t: dicom('CT_small.dcm').read_bytes(), size=(128, 128)),
    'dicom multi-frame': Case(lambda t: dicom('SC_rgb_rle_2frame.dcm'), refused=r'multi-frame DICOM \(2 frames'),
    'dicom jpeg lossless without a decoder': Case(lambda t: dicom('SC_rgb_jpeg_gdcm.dcm'),
                                                  refused=r'no installed decoder for DICOM transfer syntax JPEG Lossless',
                                                  header_refuses=False),
    'dicom jpeg-ls without a decoder': Case(lambda t: dicom('MR_small_jpeg_ls_lossless.dcm'),
                                            refused=r'transfer syntax JPEG-LS Lossless', header_refuses=False),
    'dicom 12-bit jpeg': Case(lambda t: dicom('JPEG-lossy.dcm'), refused=r'\(JPEG Extended .*12-bit',
                              header_refuses=False),
    'dicom truncated pixel data': Case(lambda t: dicom('MR_truncated.dcm'), refused=r'cannot decode DICOM pixel data',
                                       header_refuses=False),
    'dicom without an image (rt plan)': Case(lambda t: dicom('rtplan.dcm'), refused=r'DICOM file holds no image'),
    'dicom over the pixel limit': Case(lambda t: dicom('CT_small.dcm'), max_pixels=10_000,
                                       refused=r'128x128 = 16,384 pixels'),
    # what the model family cannot encode: refused when loading, or padded on request
    'aspect 300:1 for qwen2-vl': Case(lambda t: save(Image.new('RGB', (6000, 20), 90), t / 'strip.png', 'PNG'),
                                      family=Qwen2VL(), refused=r'aspect ratio of 300\.0:1, over the 200:1 qwen2_vl'),
    'aspect 300:1, padding on': Case(lambda t: save(Image.new('RGB', (6000, 20), 90), t / 'strip.png', 'PNG'),
                                     family=Qwen2VL(), pad=True, size=(6000, 30), check=padded_on_black),
    'aspect 196:1 planned to 203:1 by native': Case(
        lambda t: save(Image.new('RGB', (5700, 29), 90), t / 'strip.png', 'PNG'), family=Qwen2VL(),
        policy=ResolutionPolicy(mode='native'), refused=r'native resolution plans 5684x28 .*203\.0:1'),
    'aspect 196:1 without a policy': Case(lambda t: save(Image.new('RGB', (5700, 29), 90), t / 'strip.png', 'PNG'),
                                          family=Qwen2VL(), size=(5700, 29), kept=True),
    'aspect 300:1, mixed plans, padding on': Case(
        lambda t: save(Image.new('RGB', (6000, 20), 90), t / 'strip.png', 'PNG'), family=Qwen2VL(),
        policy=ResolutionPolicy(mode='mixed', low_pixels=50_000), pad=True, check=padded_on_black),
    'aspect 300:1 for internvl (no limit)': Case(lambda t: save(Image.new('RGB', (6000, 20), 90), t / 's.png', 'PNG'),
                                                 family=InternVL(), size=(6000, 20), kept=True),
}


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    marked().save(buf, format='JPEG')
    return buf.getvalue()


def _as_model_sees(payload) -> np.ndarray:
    """What ms-swift's `load_image` makes of the payload (open, convert to RGB)."""
    from swift.template.vision_utils import load_image
    return np.asarray(load_image(payload))


@pytest.mark.parametrize('name', list(IMAGE_CASES))
def test_image_case(name, tmp_path):
    case = IMAGE_CASES[name]
    source = case.build(tmp_path)
    is_file = not isinstance(source, bytes)
    where = f'{WHERE} file={source}' if is_file else WHERE
    kw = dict(max_pixels=case.max_pixels, channels=case.channels, family=case.family, policy=case.policy, pad=case.pad)
    measure = Measure(case.max_pixels, case.channels)
    if case.refused:
        with pytest.raises(MedresError) as err:
            model_image(source, where, **kw)
        message = str(err.value)
        assert re.search(case.refused, message), message
        assert message.startswith(where), message           # dataset, split, row, and the file
        if case.family is None:                              # tokens and prepare refuse it alike
            assert measure((7, source, where))[2] == message
            with pytest.raises(MedresError):
                decode_rgb(source, where, case.channels, case.max_pixels)
        if case.header_refuses:
            with pytest.raises(MedresError, match=re.escape(where)):
                model_size(source, where, **kw)
        return
    image = model_image(source, where, **kw)
    seen = _as_model_sees(image.payload)
    assert (image.width, image.height) == seen.shape[1::-1]
    if case.size:
        assert (image.width, image.height) == case.size
    if case.kept is not None:
        assert image.converted is not case.kept
    if case.check:
        case.check(seen, source)
    assert model_size(source, where, **kw) == (image.width, image.height)     # tokens --headers-only
    if not case.pad:
        rgb, _ = decode_rgb(source, where, case.channels, case.max_pixels)      # prepare and tokens
        assert np.array_equal(rgb, seen) and measure((7, source, where))[1] == (image.width, image.height)


# ---------------------------------------------------------------------------- registry files

ENTRY = """name: {name}
title: Catalogue
modality: radiology
task: {task}
metric: {metric}
sources: {{local: ../src}}
splits: {{train: {{hub_split: train{rows}}}}}
columns: {columns}
{extra}native_size: {{width: 8, height: 8}}
license: x
citation: y
"""
CLOSED = '{kind: closed_vqa, closed_answers: ["yes", "no"]}'
QA_COLUMNS = '{image: image, question: question, answer: answer}'


def entry_text(name='cat', task=CLOSED, metric='closed_accuracy', rows='', columns=QA_COLUMNS, extra='') -> str:
    return ENTRY.format(name=name, task=task, metric=metric, rows=rows, columns=columns, extra=extra)


def write(path: Path, text) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


REGISTRY_CASES = {
    # folder name -> {file: text}, the error pattern (None: loads), the files the error must name
    'a key repeated in one file': ({'a/cat.yaml': entry_text().replace('metric: closed_accuracy',
                                                                       'metric: closed_accuracy\nmetric: accuracy')},
                                   r"cat\.yaml: key 'metric' is given twice, on lines 5 and 6", ['cat.yaml']),
    'one name, two extensions': ({'a/cat.yaml': entry_text(), 'a/cat.yml': entry_text()},
                                 r"'cat' is defined twice \(two extensions in one folder\)", ['cat.yaml', 'cat.yml']),
    'one name, two user folders': ({'a/cat.yaml': entry_text(), 'b/cat.yaml': entry_text()},
                                   r"'cat' is defined twice \(two registry folders\)", ['a/cat.yaml', 'b/cat.yaml']),
    'a built-in replaced on purpose': ({'a/vqa-rad.yaml': entry_text('vqa-rad')}, None, []),
    'the same folder named twice': ({'a/cat.yaml': entry_text(), 'a/../a/.keep': ''}, None, []),
    'file name and name differ': ({'a/dog.yaml': entry_text()}, r"dog\.yaml: field 'name': 'cat' must match", ['dog.yaml']),
    'not UTF-8': ({'a/cat.yaml': entry_text().encode().replace(b'Catalogue', b'Cat\xe9logue')},
                  r'cat\.yaml: line 2: not UTF-8 text \(byte 0xe9\)', ['cat.yaml']),
    'not YAML': ({'a/cat.yaml': 'name: [cat\n'}, r'cat\.yaml: not valid YAML', ['cat.yaml']),
    'empty file': ({'a/cat.yaml': ''}, r'cat\.yaml: expected a mapping of fields, got NoneType', ['cat.yaml']),
    'yes/no unquoted': ({'a/cat.yaml': entry_text(task='{kind: closed_vqa, closed_answers: [yes, no]}')},
                        r"field 'task\.closed_answers'.*quote them", ['cat.yaml']),
    'an unknown field': ({'a/cat.yaml': entry_text(extra='colour: red\n')}, r"field 'colour': Extra inputs", ['cat.yaml']),
    'a channel that cannot be found': ({'a/cat.yaml': entry_text(extra='channels: [{name: a, color: red}]\n')},
                                       r"channels: \['a'\] need a `source`", ['cat.yaml']),
}


@pytest.mark.parametrize('name', list(REGISTRY_CASES))
def test_registry_case(name, tmp_path):
    from swift_plugins.data.registry import load_registry
    files, refused, named = REGISTRY_CASES[name]
    for rel, text in files.items():
        write(tmp_path / rel, text)
    folders = sorted({rel.split('/')[0] for rel in files})
    if name == 'the same folder named twice':
        folders = ['a', 'a/../a']
    dirs = [tmp_path / f for f in folders]
    if refused is None:
        entries = load_registry(dirs)
        assert entries['cat' if 'cat' in entries and name != 'a built-in replaced on purpose' else 'vqa-rad'].path \
            .startswith(str(tmp_path))
        return
    with pytest.raises(MedresError) as err:
        load_registry(dirs)
    message = str(err.value)
    assert re.search(refused, message), message
    for f in named:
        assert f in message, message


# ---------------------------------------------------------------------------- jsonl rows, through ms-swift

def dataset(tmp: Path, data: list[dict], *, lines: Optional[bytes] = None, images=('0.png', '1.png', '2.png', '3.png'),
            **entry) -> Path:
    """A registry entry `cat` over `src/data/train.jsonl`, loaded as `swift sft --dataset medres/cat` loads it."""
    for i, name in enumerate(images):
        save(Image.new('RGB', (30 + i, 20), (10 * i, 100, 50)), write(tmp / 'src' / name, b''), 'PNG')
    body = lines if lines is not None else ''.join(json.dumps(r) + '\n' for r in data).encode()
    write(tmp / 'src' / 'data' / 'train.jsonl', body)
    write(tmp / 'reg' / 'cat.yaml', entry_text(**entry))
    return tmp / 'reg'


def load_cat(registry: Path, monkeypatch, spec='medres/cat'):
    from swift.dataset import load_dataset

    from swift_plugins.data.loader import register_datasets
    from swift_plugins.settings import Settings
    monkeypatch.setenv('MEDRES_REGISTRY', str(registry))
    register_datasets(Settings.from_env())
    train, _ = load_dataset(spec)
    return train


def qa(i, answer='yes', question='Is it?', **kw):
    return {'image': f'{i}.png', 'question': question, 'answer': answer, **kw}


LABELS = dict(task='{kind: classification}', metric='accuracy', columns='{image: image, question: null, answer: answer}',
              extra='labels: [NILM, HSIL]\n')
CHOICES = dict(task='{kind: multiple_choice}', metric='accuracy',
               columns='{image: image, question: question, answer: answer, choices: options}')

ROW_CASES = {
    # name: (rows, entry options, refusal pattern naming the row (None: loads), check of loaded rows)
    'closed answer outside closed_answers': ([qa(0), qa(1, 'maybe')], {},
                                             r"row=1: closed answer 'maybe' is not one of \['yes', 'no'\].*cat\.yaml", None),
    'closed answer in another case': ([qa(0, 'Yes'), qa(1, 'NO')], {}, None,
                                      lambda ds: [r['messages'][2]['content'] for r in ds] == ['Yes', 'NO']),
    'label outside the label set': ([qa(0, 'NILM'), qa(1, 'ASC-US')], LABELS,
                                    r"row=1: label 'ASC-US' is not one of \['NILM', 'HSIL'\]", None),
    'label in another case': ([qa(0, 'nilm'), qa(1, 'HSIL')], LABELS, None, lambda ds: len(ds) == 2),
    'multiple-choice answer not among its choices': ([qa(0, 'b', options=['a', 'b']), qa(1, 'c', options=['a', 'b'])],
                                                     CHOICES, r"row=1: answer 'c' is not among its choices", None),
    'choices as a string, not a list': ([qa(0, 'a', options='a, b')], CHOICES,
                                        r"row=0: column 'options' must hold a list of option strings", None),
    'empty answer': ([qa(0), qa(1, '  ')], {}, r"row=1: empty answer in column 'answer'", None),
    'null answer': ([qa(0), qa(1, None)], {}, r"row=1: empty answer", None),
    'empty question': ([qa(0), qa(1, question='')], {}, r"row=1: empty question in column 'question'", None),
    'no image': ([qa(0), {**qa(1), 'image': None}], {}, r"row=1: the row has no image in column 'image'", None),
    'image file missing': ([qa(0), {**qa(1), 'image': 'gone.png'}], {}, r'row=1 file=.*gone\.png: image file not found',
                           None),
    'declared rows differ from the data': ([qa(0), qa(1)], {'rows': ', rows: 3'},
                                           r"split=train: .*cat\.yaml: field 'splits\.train\.rows' says 3 rows, the data "
                                           r"\(local:.*src\) has 2", None),
    'declared rows match': ([qa(0), qa(1)], {'rows': ', rows: 2'}, None, lambda ds: len(ds) == 2),
    'an id column is kept': ([qa(0, uid='P-7'), qa(1, uid='P-9')], {'columns': QA_COLUMNS[:-1] + ', id: uid}'}, None,
                             lambda ds: [r['chat_template_kwargs']['medres']['source_id'] for r in ds] == ['P-7', 'P-9']),
    'duplicate ids': ([qa(0, uid='P-7'), qa(1, uid='P-8'), qa(2, uid='P-7')], {'columns': QA_COLUMNS[:-1] + ', id: uid}'},
                      r"split=train: id 'P-7' of column 'uid' is on rows 0 and 2", None),
    'an empty id': ([qa(0, uid='P-7'), qa(1, uid='')], {'columns': QA_COLUMNS[:-1] + ', id: uid}'},
                    r"row=1: empty id in column 'uid'", None),
}


@pytest.mark.parametrize('name', list(ROW_CASES))
@pytest.mark.usefixtures('swift_registered')
def test_row_case(name, tmp_path, monkeypatch):
    rows, options, refused, check = ROW_CASES[name]
    registry = dataset(tmp_path, rows, **options)
    if refused is None:
        ds = load_cat(registry, monkeypatch)
        assert check(ds)
        return
    with pytest.raises(MedresError) as err:
        load_cat(registry, monkeypatch)
    message = str(err.value)
    assert re.search(refused, message) and 'medres/cat' in message, message


@pytest.mark.parametrize('lines, refused', [
    (b'{"image": "0.png", "question": "q", "answer": "yes"}\n{"image": "1.png", "question": "caf\xe9", "answer": "no"}\n',
     r'train\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 36\)'),
    (b'{"image": "0.png", "question": "q", "answer": "yes"}\n{"image": "1.png", "question": \n',
     r'train\.jsonl:2: not valid JSON'),
    (b'["0.png", "q", "yes"]\n', r'train\.jsonl:1: expected a JSON object per line, got list'),
], ids=['a non-UTF-8 byte', 'a broken JSON line', 'a line that is not an object'])
@pytest.mark.usefixtures('swift_registered')
def test_jsonl_file_case(lines, refused, tmp_path, monkeypatch):
    registry = dataset(tmp_path, [], lines=lines)
    with pytest.raises(MedresError, match=refused):
        load_cat(registry, monkeypatch)


def bad_split(tmp: Path) -> Path:
    """Rows 1, 3 and 4 bad (a truncated file, an answer outside the set, a missing file), 0 and 2 fine."""
    write(tmp / 'src' / 'cut.jpg', truncated(tmp, 'JPEG').read_bytes())
    rows = [qa(0), {**qa(1), 'image': 'cut.jpg'}, qa(2), qa(3, 'maybe'), {**qa(4), 'image': 'gone.png'}]
    return dataset(tmp, rows)


@pytest.mark.usefixtures('swift_registered')
def test_stop_mode_names_the_first_bad_row_and_lists_them_all(tmp_path, monkeypatch, data_home):
    with pytest.raises(MedresError) as err:
        load_cat(bad_split(tmp_path), monkeypatch)
    message = str(err.value)
    listing = data_home / 'bad-rows' / 'cat.train.jsonl'
    assert message.startswith('medres/cat split=train row=1 file=') and 'cut.jpg: cannot decode image' in message
    assert re.search(rf'3 of 5 rows of medres/cat:train are bad \(rows 1, 3, 4, read from local:.*src\), all listed '
                     rf'in {re.escape(str(listing))}', message), message
    assert [json.loads(line)['row'] for line in listing.read_text().splitlines()] == [1, 3, 4]


@pytest.mark.usefixtures('swift_registered')
def test_skip_mode_drops_bad_rows_and_says_when_none_is_left(tmp_path, monkeypatch):
    monkeypatch.setenv('MEDRES_BAD_ROWS', 'skip')
    ds = load_cat(bad_split(tmp_path), monkeypatch)
    assert [r['chat_template_kwargs']['medres']['index'] for r in ds] == [0, 2]
    only_bad = dataset(tmp_path / 'all', [qa(0, 'maybe'), qa(1, 'perhaps')])
    with pytest.raises(MedresError, match=r'all 2 rows of medres/cat:train were skipped as bad '
                                          r'\(MEDRES_BAD_ROWS=skip, read from local:.*\)'
                                          r'.*row=0: closed answer'):
        load_cat(only_bad, monkeypatch)


@pytest.mark.usefixtures('swift_registered')
def test_mixed_slots_are_drawn_after_bad_rows_are_dropped(tmp_path, monkeypatch):
    from swift_plugins.resolution.mixing import MixSlot
    images = [f'{i}.png' for i in range(10)]
    rows = [qa(i, 'maybe' if i in (3, 8) else 'yes') for i in range(10)]
    registry = dataset(tmp_path, rows, images=images)
    monkeypatch.setenv('MEDRES_BAD_ROWS', 'skip')
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    ds = load_cat(registry, monkeypatch)
    slots = [MixSlot(**r['chat_template_kwargs']['medres']['mix']) for r in ds]
    assert len(ds) == 8 and {s.n for s in slots} == {8} and sum(s.is_low() for s in slots) == 4
    assert sorted(s.pos for s in slots) == list(range(8))


@pytest.mark.usefixtures('swift_registered')
def test_extreme_aspect_is_refused_at_load_for_the_runs_family_or_padded(tmp_path, monkeypatch):
    from swift_plugins.resolution import families
    save(Image.new('RGB', (6000, 20), 90), write(tmp_path / 'src' / 'strip.png', b''), 'PNG')
    registry = dataset(tmp_path, [qa(0), {**qa(1), 'image': 'strip.png'}, qa(2)])
    assert len(load_cat(registry, monkeypatch)) == 3          # no template built: nothing to check against
    monkeypatch.setitem(families._RUN_FAMILY, 'family', families.Qwen2VL)   # what a qwen2_vl template records
    with pytest.raises(MedresError, match=r'row=1 file=.*strip\.png: 6000x20 has an aspect ratio of 300\.0:1, over the '
                                          r'200:1 qwen2_vl accepts'):
        load_cat(registry, monkeypatch)
    monkeypatch.setenv('MEDRES_PAD_ASPECT', '1')
    meta = load_cat(registry, monkeypatch)[1]['chat_template_kwargs']['medres']
    assert meta['padded_from'] == [6000, 20] and (meta['width'], meta['height']) == (6000, 30)


@pytest.mark.usefixtures('swift_registered')
def test_a_raised_pixel_limit_admits_images_over_pils_default(tmp_path, monkeypatch):
    from swift.template.vision_utils import load_image
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 4_000)    # PIL's default, scaled down: 2x this is refused
    registry = dataset(tmp_path, [qa(0), qa(1)], images=())
    for i in range(2):
        save(Image.new('RGB', (200, 100), 30), tmp_path / 'src' / f'{i}.png', 'PNG')
    monkeypatch.setenv('MEDRES_MAX_IMAGE_PIXELS', '30000')
    ds = load_cat(registry, monkeypatch)
    assert load_image(ds[0]['images'][0]['path']).size == (200, 100)    # ms-swift opens what medres admitted


@pytest.mark.usefixtures('swift_registered', 'use_local_sources')
def test_rows_carry_their_image_reference_and_split_size():
    from helpers import load
    ds = load('medres/vqa-rad:test')
    meta = ds[3]['chat_template_kwargs']['medres']
    assert re.fullmatch(r'local-override:.*vqa-rad split=test row=3', meta['image_ref']) and meta['split_rows'] == len(ds)


# ---------------------------------------------------------------------------- prediction files (`medres score`)

def infer_rows(n_of, indices, dataset_name='vqa-rad', duplicate=None):
    out = []
    for i in indices:
        gold = 'yes' if i % 2 else 'no'
        out.append({'response': gold, 'labels': gold, 'chat_template_kwargs': {'medres': {
            'id': f'{dataset_name}/test/{i}', 'dataset': dataset_name, 'split': 'test', 'index': i,
            'split_rows': n_of, 'image_key': f'k{i}'}}})
    return out


PREDICTION_CASES = {
    # rows of the file, extra flags, pattern (exit 2) or what the table must say (exit 0)
    'complete': (infer_rows(6, range(6)), [], None, '6 of 6 rows'),
    'missing rows': (infer_rows(6, [0, 2, 4]), [], r'preds\.jsonl: 3 of 6 rows of medres/vqa-rad \(test: 3 missing '
                                                   r'\(rows 1, 3, 5\)\).*--allow-partial', None),
    'missing rows, --allow-partial': (infer_rows(6, [0, 2, 4]), ['--allow-partial'], None, '3 of 6 rows (PARTIAL)'),
    'duplicated rows': (infer_rows(6, [0, 1, 2, 3, 4, 5, 1, 2]), ['--allow-partial'],
                        r"preds\.jsonl: 6 rows of 'vqa-rad', but 2 duplicated rows \(id 'vqa-rad/test/1' at lines 2 and 7",
                        None),
    'rows of another dataset': (infer_rows(6, range(6)) + infer_rows(4, [0, 1], 'slake'), ['--allow-partial'],
                                r"preds\.jsonl: 6 rows of 'vqa-rad', but 2 rows of another dataset \(2 of 'slake'; first "
                                r"at line 7\)", None),
    'rows of two loads': (infer_rows(6, range(3)) + infer_rows(7, range(3, 6)), [],
                          r'rows disagree on the split size \(\[6, 7\]\)', None),
    'a non-UTF-8 byte': (b'{"response": "caf\xe9"}\n', [], r'preds\.jsonl:1: not UTF-8 text \(byte 0xe9', None),
    'a broken line': (b'{"response": \n', [], r'preds\.jsonl:1: not valid JSON', None),
    'no medres metadata': ([{'response': 'yes', 'labels': 'yes'}], [], r'preds\.jsonl:1: no chat_template_kwargs\.medres',
                           None),
    'empty': (b'\n', [], r'preds\.jsonl: no predictions', None),
}


@pytest.mark.parametrize('name', list(PREDICTION_CASES))
def test_prediction_file_case(name, tmp_path, capsys):
    from swift_plugins.cli.main import main
    rows, flags, refused, shown = PREDICTION_CASES[name]
    body = rows if isinstance(rows, bytes) else ''.join(json.dumps(r) + '\n' for r in rows).encode()
    preds = write(tmp_path / 'preds.jsonl', body)
    code = main(['score', '--dataset', 'vqa-rad', '--predictions', str(preds), '--n-boot', '50', *flags])
    out = capsys.readouterr()
    if refused:
        assert code == 2 and out.err.startswith('medres: error: ') and re.search(refused, out.err), out.err
    else:
        assert code == 0 and shown in out.out.replace('\n', ' '), out.out


# ---------------------------------------------------------------------------- `medres tokens` agrees with the loader

@pytest.mark.usefixtures('swift_registered')
def test_tokens_counts_only_what_the_loader_keeps(tmp_path, monkeypatch, capsys, data_home):
    from swift_plugins.cli.main import main
    src = tmp_path / 'src'
    write(src / 'cut.jpg', truncated(tmp_path, 'JPEG').read_bytes())
    write(src / 'pages.tif', multipage(tmp_path).read_bytes())
    save(Image.new('RGB', (300, 250)), write(src / 'big.png', b''), 'PNG')
    save(Image.new('RGB', (6000, 10)), write(src / 'strip.png', b''), 'PNG')   # 214:1 even once planned to 28 px
    rows = [qa(0), {**qa(1), 'image': 'cut.jpg'}, {**qa(2), 'image': 'pages.tif'}, qa(3), {**qa(4), 'image': 'big.png'},
            {**qa(5), 'image': 'strip.png'}]
    registry = dataset(tmp_path, rows)
    monkeypatch.setenv('MEDRES_REGISTRY', str(registry))
    monkeypatch.setenv('MEDRES_MAX_IMAGE_PIXELS', '70000')
    assert main(['tokens', '--dataset', 'cat', '--family', 'qwen2_vl', '--json']) == 0
    report = json.loads(capsys.readouterr().out)
    refused = {r['row']: r['reason'] for r in report[0]['refused']}
    assert report[0]['images'] == 2 and sorted(refused) == [1, 2, 4, 5]
    assert 'cannot decode image' in refused[1] and 'channel mapping' in refused[2]
    assert '75,000 pixels, over the limit of 70,000' in refused[4] and 'aspect ratio of 214.0:1' in refused[5]
    # The loader, in the run's family, keeps exactly the rows tokens counted.
    monkeypatch.setenv('MEDRES_BAD_ROWS', 'skip')
    from swift_plugins.resolution import families
    monkeypatch.setitem(families._RUN_FAMILY, 'family', families.Qwen2VL)
    assert [r['chat_template_kwargs']['medres']['index'] for r in load_cat(registry, monkeypatch)] == [0, 3]
    # The table lists them too, with the file naming them all; headers only cannot see the truncated file.
    assert main(['tokens', '--dataset', 'cat', '--resolution', 'native']) == 0
    printed = capsys.readouterr().out
    assert '4 of 6 rows of cat:train are bad (rows 1, 2, 4, 5)' in printed and 'cat.train.jsonl' in printed
    assert main(['tokens', '--dataset', 'cat', '--resolution', 'native', '--headers-only', '--json']) == 0
    assert [r['row'] for r in json.loads(capsys.readouterr().out)[0]['refused']] == [2, 4, 5]


@pytest.mark.usefixtures('use_local_sources')
def test_tokens_checks_every_name_before_reading_and_keeps_split_names_whole():
    import os
    import subprocess
    import sys
    code = ('import sys\nfrom swift_plugins.cli.main import main\n'
            'code = main(["tokens", "--dataset", "vqa-rad:test", "--dataset", "vqa-rad:nope"])\n'
            'print(code, "swift" in sys.modules, "datasets" in sys.modules)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert out.stdout.split() == ['2', 'False', 'False'], out.stderr[-2000:]
    assert "unknown split(s) ['nope']" in out.stderr
    # A narrow terminal shortens nothing: split names and every number stay whole; ms-swift is not needed.
    code = ('import sys\nfrom swift_plugins.cli.main import main\n'
            'main(["tokens", "--dataset", "path-vqa:validation/test", "--headers-only"])\n'
            'print("swift imported:", "swift" in sys.modules)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env={**os.environ, 'COLUMNS': '60'})
    assert out.stdout.count('path-vqa:validation') == 3 and out.stdout.count('path-vqa:test') == 3, out.stdout
    assert '…' not in out.stdout and 'tokens/epoch' in out.stdout and 'mixed' in out.stdout, out.stdout
    assert 'swift imported: False' in out.stdout


# ---------------------------------------------------------------------------- `medres prepare`

def test_test_size_is_met_when_a_bad_file_was_drawn(tmp_path):
    from swift_plugins.fixtures.raw_sources import build_cervical, build_hpa_captions
    from swift_plugins.prepare import prepare
    root = tmp_path / 'lbc'
    files = build_cervical(root)['files']
    for stem in ('HSIL/2', 'NILM/1', 'SCC/3'):
        files[stem][1].write_bytes(files[stem][1].read_bytes()[:400])
    m = prepare('cervical', root, tmp_path / 'out', on_error='skip', test_size=5)
    assert m['counts'] == {'train': 12, 'test': 5} and m['skipped']['count'] == 3
    hpa = tmp_path / 'hpa'
    entries = build_hpa_captions(hpa)['entries']
    composite = next(e['file_path'] for e in entries if e['file_path'].endswith('_blue_red_green.jpg'))
    (hpa / composite).write_bytes(b'\xff\xd8 truncated')
    m = prepare('subcellular', hpa, tmp_path / 'out2', on_error='skip', test_size=3)
    assert m['counts']['test'] == 3 and m['counts']['train'] == 10 and m['skipped']['count'] == 1
    assert not list((tmp_path / 'out2' / 'images').glob('.*'))          # nothing staged is left behind


def test_prepare_bakes_exif_orientation_in(tmp_path):
    from swift_plugins.fixtures.raw_sources import build_cervical
    from swift_plugins.prepare import prepare
    files = build_cervical(tmp_path / 'lbc')['files']
    path = files['SCC/1'][1]
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.open(path).save(path, quality=95, exif=exif.tobytes())     # a camera JPEG held sideways
    prepare('cervical', tmp_path / 'lbc', tmp_path / 'out', test_size=5)
    rows = [json.loads(line) for split in ('train', 'test')
            for line in (tmp_path / 'out' / 'data' / f'{split}.jsonl').read_text().splitlines()]
    row = next(r for r in rows if r['id'] == 'SCC/1')
    stored = Image.open(tmp_path / 'out' / row['image'])
    assert row['image'].endswith('.png') and stored.size == (48, 64)      # upright, as a viewer shows it
    assert np.array_equal(np.asarray(stored), np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB')))


def test_a_killed_runs_partial_folder_goes_with_the_next_run(tmp_path):
    import os
    import subprocess
    import sys
    import time

    from swift_plugins.fixtures.raw_sources import build_cervical
    from swift_plugins.prepare import prepare
    build_cervical(tmp_path / 'lbc')
    out = tmp_path / 'prepared' / 'cervical'
    prepare('cervical', tmp_path / 'lbc', out, test_size=5)
    code = ('import time\nfrom swift_plugins.prepare.common import DatasetWriter\nreal = DatasetWriter.copy\n'
            'def slow(self, *a):\n    r = real(self, *a)\n    print("copied", flush=True)\n    time.sleep(120)\n'
            '    return r\nDatasetWriter.copy = slow\nfrom swift_plugins.prepare import prepare\n'
            f'prepare("cervical", {str(tmp_path / "lbc")!r}, {str(out)!r}, test_size=5, force=True, workers=1)\n')
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'copied'
        proc.kill()   # killed outright, and not reaped yet: its pid still answers
        # The kill lands asynchronously (slowly on a loaded machine): wait for the zombie, unreaped. The
        # main thread turns zombie before the run's other threads have gone (and closed its files).
        deadline, state, threads = time.monotonic() + 120, '', []
        while time.monotonic() < deadline:
            state = Path(f'/proc/{proc.pid}/stat').read_text().rsplit(')', 1)[-1].split()[0]
            threads = os.listdir(f'/proc/{proc.pid}/task')
            if state == 'Z' and threads == [str(proc.pid)]:
                break
            time.sleep(0.01)
        assert state == 'Z' and threads == [str(proc.pid)], f'the killed run is still in state {state!r}, {threads}'
        partial = [p.name for p in out.parent.iterdir() if '.partial-' in p.name]
        assert len(partial) == 1
        prepare('cervical', tmp_path / 'lbc', out, test_size=5)      # up to date: a no-op that still cleans up
        assert [p.name for p in out.parent.iterdir()] == ['cervical']
    finally:
        proc.kill()
        proc.wait()


def test_the_missing_folder_hint_names_prepare_only_for_what_it_prepares(tmp_path):
    from swift_plugins.data.registry import get_entry, load_entry
    from swift_plugins.data.sources import resolve_source
    from swift_plugins.prepare import CONVERTERS
    from swift_plugins.settings import Settings
    from swift_plugins.vocabulary import PREPARED_DATASETS
    assert set(PREPARED_DATASETS) == set(CONVERTERS)
    settings = Settings(data_home=tmp_path / 'home')
    for name in PREPARED_DATASETS:
        with pytest.raises(MedresError, match=rf'prepare it first: `medres prepare {name} --raw <download> --out '):
            resolve_source(get_entry(name), None, settings)
    mine = load_entry(write(tmp_path / 'reg' / 'cat.yaml', entry_text()))
    with pytest.raises(MedresError) as err:
        resolve_source(mine, None, settings)
    assert 'medres prepare' not in str(err.value) and 'cat.yaml' in str(err.value)
    with pytest.raises(MedresError) as err:
        resolve_source(get_entry('probe'), None, settings)
    assert 'medres prepare' not in str(err.value)


# ---------------------------------------------------------------------------- plain jsonl rows in a swift run

def plain_row(path: Path, question: str, answer: Optional[str] = 'yes') -> dict:
    """A row of a user's own ms-swift jsonl: no medres metadata."""
    messages = [{'role': 'user', 'content': f'<image>{question}'}]
    return {'messages': messages + ([{'role': 'assistant', 'content': answer}] if answer else []), 'images': [str(path)]}


@pytest.mark.usefixtures('swift_registered')
def test_mixed_resolution_works_on_plain_jsonl_rows(tiny_qwen2_vl, monkeypatch, tmp_path):
    from swift.template import get_template

    from swift_plugins.resolution import families
    from swift_plugins.resolution.templates import content_id
    monkeypatch.setenv('MEDRES_RESOLUTION', 'mixed')
    monkeypatch.setenv('MEDRES_MIX_BALANCE', 'none')
    monkeypatch.setenv('MEDRES_LOW_PIXELS', '3136')
    monkeypatch.setenv('MEDRES_TOKEN_LOG', str(tmp_path / 'log.jsonl'))
    from swift.model import get_processor
    t = get_template(get_processor(str(tiny_qwen2_vl), model_type='qwen2_vl'), template_type='qwen2_vl')
    assert isinstance(families.run_family(), families.Qwen2VL)     # the loader now checks for this family
    image = save(Image.new('RGB', (300, 200), 80), tmp_path / 'x.png', 'PNG')
    for i in range(16):
        t.encode(plain_row(image, f'question {i}?'))
    t.encode(plain_row(image, 'question 3?', answer=None))            # as `swift infer` encodes it
    log = [json.loads(line) for line in (tmp_path / 'log.jsonl').read_text().splitlines()]
    decisions = [r['decision'] for r in log]
    assert 0 < decisions.count('low') < 16 and decisions[16] == decisions[3]   # drawn, and stable per row
    assert content_id(plain_row(image, 'q?')['messages'], [str(image)]) == content_id(
        plain_row(image, 'q?', answer=None)['messages'], [str(image)])
    # A plain row's image the family cannot encode fails when the policy plans it, naming the row.
    monkeypatch.setenv('MEDRES_RESOLUTION', 'native')
    t = get_template(get_processor(str(tiny_qwen2_vl), model_type='qwen2_vl'), template_type='qwen2_vl')
    strip = save(Image.new('RGB', (6000, 10), 80), tmp_path / 'strip.png', 'PNG')
    with pytest.raises(MedresError, match=r'sample content/[0-9a-f]{16} image 0: native resolution plans 5992x28 .*'
                                          r'214\.0:1, over the 200:1 qwen2_vl accepts'):
        t.encode(plain_row(strip, 'a strip?'))


@pytest.mark.slow
def test_swift_infer_names_the_bad_row_and_predicts_the_others(tiny_qwen2_vl, tmp_path, monkeypatch):
    """A 6000x10 image Qwen2-VL cannot encode: stock `swift infer` predicts every other row and names
    it (`medres score` then says n of N); with MEDRES_BAD_ROWS=error it stops at load naming it, not
    with a ValueError mid-run; `swift sft` stops by default."""
    import os
    import subprocess

    from swift_plugins.fixtures.tiny_runs import tiny_infer_args, tiny_sft_args

    from helpers import BIN, plugin_path, run_medres
    save(Image.new('RGB', (6000, 10), 90), write(tmp_path / 'src' / 'strip.png', b''), 'PNG')
    registry = dataset(tmp_path, [qa(0), {**qa(1), 'image': 'strip.png'}, qa(2, 'no'), qa(3)])
    monkeypatch.setenv('MEDRES_REGISTRY', str(registry))
    preds = tmp_path / 'preds.jsonl'
    swift = [str(BIN / 'swift'), 'infer', '--external_plugins', plugin_path()]
    infer = swift + tiny_infer_args(tiny_qwen2_vl, 'medres/cat', preds)
    named = (r'medres/cat split=train row=1 file=.*strip\.png: 6000x10 has an aspect ratio of 600\.0:1, over the '
             r'200:1 qwen2_vl accepts')

    run = subprocess.run(infer, capture_output=True, text=True, env=os.environ.copy())
    assert run.returncode == 0, run.stderr[-3000:]
    assert '1 of 4 rows of medres/cat:train are bad (rows 1, read from local:' in run.stderr and re.search(named, run.stderr)
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r['chat_template_kwargs']['medres']['index'] for r in rows] == [0, 2, 3]
    refused = run_medres('score', '--dataset', 'cat', '--predictions', str(preds), expect=2)
    assert '3 of 4 rows of medres/cat (train: 1 missing (rows 1))' in refused
    assert '3 of 4 rows (PARTIAL)' in run_medres('score', '--dataset', 'cat', '--predictions', str(preds),
                                                  '--allow-partial')

    preds.unlink()
    stop = subprocess.run(infer, capture_output=True, text=True, env={**os.environ, 'MEDRES_BAD_ROWS': 'error'})
    assert stop.returncode != 0 and not preds.exists()
    assert re.search('medres: error: ' + named, stop.stderr), stop.stderr[-3000:]
    assert 'ValueError' not in stop.stderr and 'Traceback' not in stop.stderr
    sft = subprocess.run([str(BIN / 'swift'), 'sft', '--external_plugins', plugin_path(),
                          *tiny_sft_args(tiny_qwen2_vl, 'medres/cat', tmp_path / 'sft', max_steps=1)],
                         capture_output=True, text=True, env=os.environ.copy())
    assert sft.returncode != 0 and re.search('medres: error: ' + named, sft.stderr), sft.stderr[-3000:]
