"""The one decoder: any supported file or bytes -> planes -> an explicit 8-bit RGB image.

Every image a model sees goes through `decode_rgb`: registry rows in `swift sft` / `swift infer`
(through `decode.py`), `medres tokens`, and `medres prepare`'s converters. TIFFs go through
tifffile, which reads what PIL cannot (16-bit RGB, multi-page and multichannel stacks, planar
layouts, tiled and compressed files); 16-bit colour PNGs through imagecodecs (PIL keeps only their
high bytes); DICOM through pydicom (`dicom.py`); everything else through `images.open_image`. All
refuse images over `MEDRES_MAX_IMAGE_PIXELS` before decoding them and honour the EXIF / TIFF
orientation tag. Data above 8 bits is percentile-windowed per channel, never clipped; an image of
four or more channels (or a stack of stains) only becomes RGB through an explicit mapping (a
registry entry's `channels`), never as RGB + alpha.
"""
from __future__ import annotations

import gzip
import io
import os
import struct
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tifffile
from PIL import Image, ImageOps

from ..errors import ImageDecodeError
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS
from .dicom import decode_dicom, dicom_size, is_dicom
from .images import (
    ALPHA_BACKGROUND,
    WINDOW_PERCENTILES,
    apply_window,
    exif_orientation,
    open_image,
    percentile_window,
    pixel_limit_error,
    to_rgb,
)
from .registry import Channel

PathLike = Union[str, os.PathLike]
Source = Union[bytes, str, os.PathLike]
Window = tuple[float, float]

COLORS: dict[str, tuple[float, float, float]] = {
    'red': (1, 0, 0), 'green': (0, 1, 0), 'blue': (0, 0, 1), 'yellow': (1, 1, 0),
    'cyan': (0, 1, 1), 'magenta': (1, 0, 1), 'gray': (1, 1, 1), 'none': (0, 0, 0),
}
TIFF_MAGIC = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
# PNG colour types with colour or alpha samples; at 16 bits PIL reduces them to 8 (gray alone it keeps).
PNG_DEEP_COLOR_TYPES = {2: 'RGB', 4: 'LA', 6: 'RGBA'}
# What the header must hold to tell the format: DICOM's magic sits after a 128-byte preamble.
HEAD_BYTES = 132
RGB_NAMES = ('red', 'green', 'blue')


@dataclass
class Decoded:
    """A fully decoded file: `planes` is (planes, height, width) in the stored dtype, oriented."""
    planes: np.ndarray
    kind: str            # 'gray' | 'rgb' | 'rgba' | 'stack'
    dtype: str           # stored sample type, e.g. 'uint16'
    format: str = ''     # 'JPEG', 'PNG', 'TIFF', 'DICOM', ...
    mode: str = ''       # what was stored, e.g. PIL's 'CMYK', 'I;16', 'RGB;16', 'DICOM MONOCHROME1'
    orientation: int = 1  # the EXIF / TIFF orientation applied (1: none)
    info: dict = field(default_factory=dict)

    @property
    def height(self) -> int:
        return self.planes.shape[1]

    @property
    def width(self) -> int:
        return self.planes.shape[2]


def is_gzip(source: Source) -> bool:
    return not isinstance(source, (bytes, bytearray)) and os.fspath(source).lower().endswith('.gz')


def gunzip(path: PathLike, where: str) -> bytes:
    try:
        with gzip.open(path) as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise ImageDecodeError(f'{where}: cannot decompress {os.fspath(path)}: {type(e).__name__}: {e}') from None


def _name(source: Source) -> str:
    return '' if isinstance(source, (bytes, bytearray)) else os.fspath(source)


def head(source: Source) -> bytes:
    """The first bytes of a file or payload: enough to tell TIFF, PNG and DICOM apart."""
    if isinstance(source, (bytes, bytearray)):
        return bytes(source[:HEAD_BYTES])
    with open(source, 'rb') as f:
        return f.read(HEAD_BYTES)


def is_tiff(path: Source) -> bool:
    return head(path)[:4] in TIFF_MAGIC


def png_deep_color(head_bytes: bytes) -> Optional[str]:
    """'RGB' / 'LA' / 'RGBA' for a 16-bit PNG with colour or alpha samples (from its IHDR), else None."""
    if head_bytes[:8] != PNG_MAGIC or head_bytes[12:16] != b'IHDR' or len(head_bytes) < 26:
        return None
    bit_depth, color_type = head_bytes[24], head_bytes[25]
    return PNG_DEEP_COLOR_TYPES.get(color_type) if bit_depth == 16 else None


def _check_size(height: int, width: int, where: str, limit: int) -> None:
    if height * width > limit:
        raise pixel_limit_error(where, width, height, limit)


def orient(planes: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF/TIFF orientation (1-8) to (planes, height, width) data, as PIL's `exif_transpose`."""
    yx = (1, 2)
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, :, ::-1],                                  # mirror horizontal
        3: lambda a: a[:, ::-1, ::-1],                               # rotate 180
        4: lambda a: a[:, ::-1, :],                                  # mirror vertical
        5: lambda a: np.swapaxes(a, *yx),                            # transpose
        6: lambda a: np.rot90(a, k=-1, axes=yx),                     # rotate 90 clockwise
        7: lambda a: np.swapaxes(a, *yx)[:, ::-1, ::-1],             # transverse
        8: lambda a: np.rot90(a, k=1, axes=yx),                      # rotate 90 counter-clockwise
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(planes))


def _tiff_array(tif: tifffile.TiffFile, where: str, max_pixels: int) -> tuple[np.ndarray, str, int, tuple, int]:
    """Series data, its axes, the photometric code, extra-sample kinds and orientation of the first page."""
    series = tif.series
    if not series:
        raise ImageDecodeError(f'{where}: TIFF holds no image data')
    page = tif.pages[0]
    photometric, extras = int(page.photometric), tuple(int(e) for e in page.extrasamples)
    orientation = int(getattr(page.tags.get('Orientation'), 'value', 1) or 1)
    if len(series) == 1:
        s = series[0]
        shape = dict(zip(s.axes, s.shape))
        _check_size(shape.get('Y', 1), shape.get('X', 1), where, max_pixels)
        return s.asarray(), s.axes, photometric, extras, orientation
    # Pages written one at a time (one per stain) come back as one 2-D series each.
    if all(s.axes == 'YX' and s.shape == series[0].shape for s in series):
        _check_size(*series[0].shape, where, max_pixels)
        return np.stack([s.asarray() for s in series]), 'IYX', photometric, extras, orientation
    raise ImageDecodeError(f'{where}: TIFF holds {len(series)} image series of different shapes '
                           f'({", ".join(s.axes + str(s.shape) for s in series)}); no single image meaning')


def _from_tiff(source: Source, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with tifffile.TiffFile(fp) as tif:
            arr, axes, photometric, extras, orientation = _tiff_array(tif, where, max_pixels)
    except ImageDecodeError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError (short reads), KeyError, ...
        raise ImageDecodeError(f'{where}: unreadable TIFF: {type(e).__name__}: {e}') from None
    if photometric in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.PALETTE):
        # CMYK and palette TIFFs carry colour semantics PIL implements (ICC profiles, palettes).
        return _from_pil(source, where, max_pixels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind in 'ui' else arr.max() - arr
    squeezed = ''.join(a for a, n in zip(axes, arr.shape) if n > 1 or a in 'YX')
    arr = arr.reshape([n for a, n in zip(axes, arr.shape) if n > 1 or a in 'YX'])
    base = dict(dtype=str(arr.dtype), format='TIFF', orientation=orientation)
    if squeezed == 'YX':
        return Decoded(orient(arr[None], orientation), 'gray', mode=f'gray {arr.dtype}', **base)
    if squeezed in ('YXS', 'SYX'):
        planes = orient(np.moveaxis(arr, -1, 0) if squeezed == 'YXS' else arr, orientation)
        n = planes.shape[0]
        layout = 'contiguous' if squeezed == 'YXS' else 'planar'
        if photometric == tifffile.PHOTOMETRIC.RGB and n == 3:
            return Decoded(planes, 'rgb', mode=f'RGB {arr.dtype} {layout}', **base)
        alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
        if photometric == tifffile.PHOTOMETRIC.RGB and n == 4 and extras and extras[0] in alpha:
            return Decoded(planes, 'rgba', mode=f'RGB+alpha-tagged {arr.dtype} {layout}', **base)
        return Decoded(planes, 'stack', mode=f'{n} samples {arr.dtype} {layout}', **base)
    if len(squeezed) == 3 and squeezed.endswith('YX'):   # CYX, IYX, QYX, ZYX: one plane per page
        return Decoded(orient(arr, orientation), 'stack', mode=f'{arr.shape[0]} pages {arr.dtype}', **base)
    raise ImageDecodeError(f'{where}: unsupported TIFF layout (axes {axes}, shape {arr.shape}); '
                           f'expected a 2-D image, samples per pixel, or one plane per page')


def _from_png16(source: Source, where: str, max_pixels: int, color: str) -> Decoded:
    """16-bit RGB / LA / RGBA PNG: decoded at full depth (PIL would keep only the high byte)."""
    import imagecodecs

    data = bytes(source) if isinstance(source, (bytes, bytearray)) else open(source, 'rb').read()
    width, height = struct.unpack('>II', data[16:24])
    _check_size(height, width, where, max_pixels)
    try:
        arr = imagecodecs.png_decode(data)
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot decode image ({width}x{height}, 16-bit PNG {color}): '
                               f'{type(e).__name__}: {e}') from None
    orientation = _pil_orientation(source)
    planes = orient(np.moveaxis(arr.reshape(height, width, -1), -1, 0), orientation)
    base = dict(dtype=str(planes.dtype), format='PNG', mode=f'{color};16', orientation=orientation)
    if color == 'RGB':
        return Decoded(planes, 'rgb', **base)
    # PNG's fourth (or second) sample is alpha by the format's definition: flattened, as for 8-bit.
    colour = np.stack([apply_window(p, percentile_window(p)) for p in planes[:-1]])
    flat = _flatten_alpha(np.moveaxis(np.repeat(colour, 3, 0) if color == 'LA' else colour, 0, -1), planes[-1])
    return Decoded(np.moveaxis(flat, -1, 0), 'rgb', info={'window': 'per channel, 0.1/99.9 percentiles, '
                                                            'then alpha flattened'}, **{**base, 'dtype': 'uint8'})


def _pil_orientation(source: Source) -> int:
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            return exif_orientation(im)
    except Exception:
        return 1


def is_pil_source(source: Source) -> bool:
    """A readable file or payload that PIL decodes (not TIFF, DICOM or a 16-bit colour PNG)."""
    try:
        first = head(source)
    except OSError:
        return False
    return bool(first) and first[:4] not in TIFF_MAGIC and not is_dicom(first, _name(source)) \
        and not png_deep_color(first)


def _from_pil(source: Source, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
              opened: Optional[Image.Image] = None) -> Decoded:
    im = opened if opened is not None else \
        open_image(source if isinstance(source, (bytes, bytearray)) else os.fspath(source), where, max_pixels)
    mode, fmt, orientation = im.mode, im.format or '', exif_orientation(im)
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    base = dict(format=fmt, mode=mode, orientation=orientation)
    if mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F', 'L'):
        arr = np.asarray(im)
        return Decoded(arr[None], 'gray', str(arr.dtype), **base)
    if mode == '1':
        return Decoded((np.asarray(im).astype(np.uint8) * 255)[None], 'gray', 'uint8', **base)
    try:
        rgb = np.asarray(to_rgb(im))   # alpha flattened, CMYK through its ICC profile, palettes expanded
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot convert {mode} image to RGB: {type(e).__name__}: {e}') from None
    return Decoded(np.moveaxis(rgb, -1, 0), 'rgb', 'uint8', **base)


def _first_bytes(source: Source, where: str) -> bytes:
    """The bytes that tell the format; an unreadable or empty file names `where`."""
    try:
        first = head(source)
    except OSError as e:
        raise ImageDecodeError(f'{where}: cannot read image file: {e}') from None
    if not first:
        raise ImageDecodeError(f'{where}: image file is empty' + (f': {source}' if _name(source) else ''))
    return first


def decode(source: Source, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
           opened: Optional[Image.Image] = None) -> Decoded:
    """Decode one file (path) or payload (bytes) fully; errors (missing, corrupt, truncated, too
    large, unsupported) name `where`. `opened`: the source already decoded by `images.open_image`."""
    if opened is not None:
        return _from_pil(source, where, max_pixels, opened)
    if not isinstance(source, (bytes, bytearray)) and not os.path.isfile(source):
        raise ImageDecodeError(f'{where}: image file not found: {source}')
    if is_gzip(source):
        # HPA ships its 16-bit originals as <id>_<stain>.tif.gz: read through, never unpacked on disk.
        return decode(gunzip(source, where), where, max_pixels)
    first = _first_bytes(source, where)
    if is_dicom(first, _name(source)):
        planes, info = decode_dicom(source, where, max_pixels)
        return Decoded(planes, 'gray' if planes.shape[0] == 1 else 'rgb', 'uint8', 'DICOM',
                       f'DICOM {info["photometric"]}', info=info)
    if first[:4] in TIFF_MAGIC:
        return _from_tiff(source, where, max_pixels)
    deep = png_deep_color(first)
    if deep:
        return _from_png16(source, where, max_pixels, deep)
    return _from_pil(source, where, max_pixels)


def _needs_mapping(where: str, n: int, what: str) -> ImageDecodeError:
    return ImageDecodeError(f'{where}: a {n}-plane image ({what}) has no RGB meaning and is not read as RGB + alpha; '
                            f'it needs an explicit channel mapping (registry `channels` with a plane `index` for '
                            f'each stain)')


def _mapped(channels: Optional[Sequence[Channel]]) -> bool:
    return bool(channels) and all(c.index is not None for c in channels if c.color != 'none')


def header_size(source: Source, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                channels: Optional[Sequence[Channel]] = None) -> tuple[int, int]:
    """(width, height) as `decode_rgb` would return it (oriented), from headers only, with the
    refusals a header shows (missing, unreadable, too large, multi-page or multi-frame, a stack
    without a mapping). Corrupt or truncated pixel data is only found by decoding."""
    if not isinstance(source, (bytes, bytearray)) and not os.path.isfile(source):
        raise ImageDecodeError(f'{where}: image file not found: {source}')
    if is_gzip(source):
        return header_size(gunzip(source, where), where, max_pixels, channels)
    first = _first_bytes(source, where)
    if is_dicom(first, _name(source)):
        return dicom_size(source, where, max_pixels)
    if first[:4] in TIFF_MAGIC:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        try:
            with tifffile.TiffFile(fp) as tif:
                series = tif.series
                if not series:
                    raise ImageDecodeError(f'{where}: TIFF holds no image data')
                page = tif.pages[0]
                shape = dict(zip(series[0].axes, series[0].shape))
                planes = int(np.prod([n for a, n in shape.items() if a not in 'YX'])) * len(series)
                rgb = int(page.photometric) == tifffile.PHOTOMETRIC.RGB and planes == 3
                if int(page.photometric) in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.PALETTE):
                    planes, rgb = 3, True   # CMYK and palette become RGB (through PIL)
                orientation = int(getattr(page.tags.get('Orientation'), 'value', 1) or 1)
        except ImageDecodeError:
            raise
        except Exception as e:
            raise ImageDecodeError(f'{where}: unreadable TIFF: {type(e).__name__}: {e}') from None
        w, h = shape.get('X', 1), shape.get('Y', 1)
        _check_size(h, w, where, max_pixels)
        if planes > 1 and not rgb and not _mapped(channels):
            raise _needs_mapping(where, planes, 'TIFF')
        return (h, w) if orientation >= 5 else (w, h)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as im:
            w, h = im.size
            frames, fmt, orientation = getattr(im, 'n_frames', 1), im.format, exif_orientation(im)
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot read the image header: {type(e).__name__}: {e}') from None
    _check_size(h, w, where, max_pixels)
    if frames > 1 and fmt != 'MPO':
        raise ImageDecodeError(f'{where}: animated {fmt} ({frames} frames) has no single image; export the frame you mean')
    return (h, w) if orientation >= 5 else (w, h)


class WindowAccumulator:
    """Exact percentile windows over many planes without holding them: a value histogram of
    8/16-bit integer data, read with np.percentile's linear interpolation."""

    def __init__(self) -> None:
        self.counts = np.zeros(1 << 16, dtype=np.int64)
        self.deep = False

    def add(self, plane: np.ndarray) -> None:
        if plane.dtype not in (np.uint8, np.uint16):
            raise ImageDecodeError(f'{plane.dtype} data cannot share a window; only 8/16-bit integer data can')
        self.counts += np.bincount(plane.ravel(), minlength=self.counts.size)
        self.deep |= plane.dtype == np.uint16

    def window(self, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> Optional[Window]:
        """None for 8-bit data (used as stored) or when nothing was added."""
        n = int(self.counts.sum())
        if not self.deep or n == 0:
            return None
        cdf = np.cumsum(self.counts)

        def value(rank: int) -> int:   # the rank-th smallest value, 0-based
            return int(np.searchsorted(cdf, rank, side='right'))

        out = []
        for p in percentiles:
            pos = p / 100 * (n - 1)
            lo = int(np.floor(pos))
            v0, v1 = value(lo), value(min(lo + 1, n - 1))
            out.append(float(v0 + (v1 - v0) * (pos - lo)))
        return out[0], out[1]


def is_plain_rgb(path: Source) -> bool:
    """An 8-bit RGB JPEG or PNG, upright and single-frame, that PIL reads exactly as `decode` does: a
    prepared dataset can keep it byte for byte (and ms-swift can be handed it as stored)."""
    if is_gzip(path):
        return False
    first = head(path)
    if first[:4] in TIFF_MAGIC or is_dicom(first, _name(path)) or png_deep_color(first):
        return False
    with Image.open(io.BytesIO(path) if isinstance(path, (bytes, bytearray)) else path) as im:
        return (im.format in ('JPEG', 'PNG') and im.mode == 'RGB' and exif_orientation(im) == 1
                and getattr(im, 'n_frames', 1) == 1)


def to_uint8(plane: np.ndarray, window: Optional[Window] = None,
             percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> tuple[np.ndarray, Optional[Window]]:
    """8-bit data as stored; deeper data windowed (given window, else its own percentiles), never clipped."""
    if plane.dtype == np.uint8:
        return plane, None
    window = window if window is not None else percentile_window(plane, percentiles)
    return apply_window(plane, window), window


def _flatten_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # Same rule as images.py: transparent areas become ALPHA_BACKGROUND. Alpha is a fraction
    # of its type's full scale, so it is scaled, not windowed.
    full = np.iinfo(alpha.dtype).max if alpha.dtype.kind in 'ui' else 1.0
    a = np.clip(alpha.astype(np.float64) / full, 0, 1)[..., None]
    return np.rint(rgb * a + np.asarray(ALPHA_BACKGROUND, dtype=np.float64) * (1 - a)).astype(np.uint8)


def composite(planes: Mapping[str, np.ndarray], channels: Sequence[Channel]) -> np.ndarray:
    """Weighted colour sum of 8-bit stain planes (keyed by channel name) -> (H, W, 3) uint8."""
    used = [c for c in channels if c.color != 'none']
    shape = planes[used[0].name].shape
    out = np.zeros(shape + (3,), dtype=np.float64)
    for c in used:
        plane = planes[c.name]
        if plane.shape != shape:
            raise ImageDecodeError(f'channel {c.name!r} is {plane.shape[1]}x{plane.shape[0]}, '
                                   f'the others {shape[1]}x{shape[0]}')
        out += plane.astype(np.float64)[..., None] * (c.weight * np.asarray(COLORS[c.color]))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def stain_plane(path: PathLike, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[np.ndarray, str]:
    """One stain's 2-D plane and its stored dtype. A tinted RGB file (HPA's per-stain JPEGs)
    contributes its brightest channel, which is the stain whatever its tint."""
    d = decode(path, where, max_pixels)
    if d.kind == 'gray' or (d.kind == 'stack' and d.planes.shape[0] == 1):
        return d.planes[0], d.dtype
    if d.kind in ('rgb', 'rgba'):
        return d.planes[:3].max(axis=0), d.dtype
    raise ImageDecodeError(f'{where}: expected one stain plane, found a stack of {d.planes.shape[0]}')


def decode_rgb(source: Source, where: str, channels: Optional[Sequence[Channel]] = None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, opened: Optional[Image.Image] = None
               ) -> tuple[np.ndarray, dict]:
    """Any supported file or payload -> (H, W, 3) uint8 and a record of what was done (manifest, rows).

    Gray and RGB data deeper than 8 bits are windowed per channel at their 0.1/99.9 percentiles (as
    16-bit gray is; 8-bit data is used as stored). An image of four or more channels, or a stack of
    stains, needs `channels` with plane indices and is composed with per-channel windows: it is never
    read as RGB + alpha (tifffile, like many writers, tags any 4-sample file as RGB + alpha)."""
    d = decode(source, where, max_pixels, opened)
    info: dict = {'source': d.kind, 'dtype': d.dtype, 'format': d.format, 'mode': d.mode,
                  'orientation': d.orientation, **d.info}
    if d.kind == 'gray':
        plane, window = to_uint8(d.planes[0])
        info['window'] = window
        return np.repeat(plane[..., None], 3, axis=-1), info
    if d.kind == 'rgb' and d.planes.dtype == np.uint8:
        info['window'] = None
        return np.moveaxis(d.planes[:3], 0, -1), info     # a view: 8-bit data is used as stored
    if d.kind == 'rgb':
        planes, windows = zip(*(to_uint8(p) for p in d.planes[:3]))
        if any(windows):
            info['windows'] = dict(zip(RGB_NAMES, windows))
        info['window'] = None
        return np.stack(planes, axis=-1), info
    n = d.planes.shape[0]
    if not _mapped(channels):
        raise _needs_mapping(where, n, f'{d.format} {d.mode}')
    planes, windows = {}, {}
    for c in channels:
        if c.color == 'none':
            continue
        if c.index >= n:
            raise ImageDecodeError(f'{where}: channel {c.name!r} is plane {c.index}, but the image has {n} planes')
        planes[c.name], windows[c.name] = to_uint8(d.planes[c.index])
    info['windows'] = windows
    return composite(planes, channels), info
