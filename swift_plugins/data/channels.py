"""Decode microscopy files (8/16-bit, multi-page, multichannel TIFF) and compose explicit RGB images.

`images.py` decodes what a hub copy holds at load time; this module is what `medres prepare`
uses on raw downloads. TIFFs go through tifffile, which reads what PIL cannot (16-bit RGB,
multi-page and multichannel stacks, planar layouts, tiled and compressed files); everything else
goes through `images.open_image`. Both refuse images over `MEDRES_MAX_IMAGE_PIXELS` before
decoding them. Data above 8 bits is percentile-windowed, never clipped; a stack of stains only
becomes RGB through an explicit mapping (a registry entry's `channels`).
"""
from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import tifffile
from PIL import Image

from ..errors import ImageDecodeError
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS
from .images import (
    ALPHA_BACKGROUND,
    WINDOW_PERCENTILES,
    apply_window,
    open_image,
    percentile_window,
    pixel_limit_error,
    to_rgb,
)
from .registry import Channel

PathLike = Union[str, os.PathLike]
Window = tuple[float, float]

COLORS: dict[str, tuple[float, float, float]] = {
    'red': (1, 0, 0), 'green': (0, 1, 0), 'blue': (0, 0, 1), 'yellow': (1, 1, 0),
    'cyan': (0, 1, 1), 'magenta': (1, 0, 1), 'gray': (1, 1, 1), 'none': (0, 0, 0),
}
TIFF_MAGIC = (b'II*\x00', b'MM\x00*', b'II+\x00', b'MM\x00+')


@dataclass
class Decoded:
    """A fully decoded file: `planes` is (planes, height, width) in the stored dtype."""
    planes: np.ndarray
    kind: str            # 'gray' | 'rgb' | 'rgba' | 'stack'
    dtype: str           # stored sample type, e.g. 'uint16'

    @property
    def height(self) -> int:
        return self.planes.shape[1]

    @property
    def width(self) -> int:
        return self.planes.shape[2]


def is_gzip(path: PathLike) -> bool:
    return os.fspath(path).lower().endswith('.gz')


def is_tiff(path: PathLike) -> bool:
    with open(path, 'rb') as f:
        return f.read(4) in TIFF_MAGIC


def _check_size(height: int, width: int, where: str, limit: int) -> None:
    if height * width > limit:
        raise pixel_limit_error(where, width, height, limit)


def _tiff_array(path: PathLike, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[np.ndarray, str, int, tuple]:
    """Series data, its axes, the photometric code and extra-sample kinds of the first page."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series
        if not series:
            raise ImageDecodeError(f'{where}: TIFF holds no image data')
        page = tif.pages[0]
        photometric, extras = int(page.photometric), tuple(int(e) for e in page.extrasamples)
        if len(series) == 1:
            s = series[0]
            shape = dict(zip(s.axes, s.shape))
            _check_size(shape.get('Y', 1), shape.get('X', 1), where, max_pixels)
            return s.asarray(), s.axes, photometric, extras
        # Pages written one at a time (one per stain) come back as one 2-D series each.
        if all(s.axes == 'YX' and s.shape == series[0].shape for s in series):
            _check_size(*series[0].shape, where, max_pixels)
            return np.stack([s.asarray() for s in series]), 'IYX', photometric, extras
        raise ImageDecodeError(f'{where}: TIFF holds {len(series)} image series of different shapes '
                               f'({", ".join(s.axes + str(s.shape) for s in series)}); no single image meaning')


def _from_tiff(path: PathLike, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    try:
        arr, axes, photometric, extras = _tiff_array(path, where, max_pixels)
    except ImageDecodeError:
        raise
    except Exception as e:  # tifffile raises TiffFileError, ValueError (short reads), KeyError, ...
        raise ImageDecodeError(f'{where}: unreadable TIFF: {type(e).__name__}: {e}') from None
    if photometric in (tifffile.PHOTOMETRIC.SEPARATED, tifffile.PHOTOMETRIC.PALETTE):
        # CMYK and palette TIFFs carry colour semantics PIL implements (ICC profiles, palettes).
        return _from_pil(path.getvalue() if isinstance(path, io.BytesIO) else path, where, max_pixels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE:
        arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind in 'ui' else arr.max() - arr
    squeezed = ''.join(a for a, n in zip(axes, arr.shape) if n > 1 or a in 'YX')
    arr = arr.reshape([n for a, n in zip(axes, arr.shape) if n > 1 or a in 'YX'])
    if squeezed == 'YX':
        return Decoded(arr[None], 'gray', str(arr.dtype))
    if squeezed in ('YXS', 'SYX') and len(squeezed) == 3:
        planes = np.moveaxis(arr, -1, 0) if squeezed == 'YXS' else arr
        n = planes.shape[0]
        if photometric == tifffile.PHOTOMETRIC.RGB and n == 3:
            return Decoded(planes, 'rgb', str(arr.dtype))
        alpha = (tifffile.EXTRASAMPLE.ASSOCALPHA, tifffile.EXTRASAMPLE.UNASSALPHA)
        if photometric == tifffile.PHOTOMETRIC.RGB and n == 4 and extras and extras[0] in alpha:
            return Decoded(planes, 'rgba', str(arr.dtype))
        return Decoded(planes, 'stack', str(arr.dtype))
    if len(squeezed) == 3 and squeezed.endswith('YX'):   # CYX, IYX, QYX, ZYX: one plane per page
        return Decoded(arr, 'stack', str(arr.dtype))
    raise ImageDecodeError(f'{where}: unsupported TIFF layout (axes {axes}, shape {arr.shape}); '
                           f'expected a 2-D image, samples per pixel, or one plane per page')


def _from_pil(path: Union[PathLike, bytes], where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    im = open_image(path if isinstance(path, bytes) else os.fspath(path), where, max_pixels)
    mode = im.mode
    if mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F', 'L'):
        arr = np.asarray(im)
        return Decoded(arr[None], 'gray', str(arr.dtype))
    if mode == '1':
        return Decoded((np.asarray(im).astype(np.uint8) * 255)[None], 'gray', 'uint8')
    try:
        rgb = np.asarray(to_rgb(im))   # alpha flattened, CMYK through its ICC profile, palettes expanded
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot convert {mode} image to RGB: {type(e).__name__}: {e}') from None
    return Decoded(np.moveaxis(rgb, -1, 0), 'rgb', 'uint8')


def decode(path: PathLike, where: str, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    """Decode one file fully (gzipped files read through); errors (missing, corrupt, truncated, too large) name `where`."""
    if not os.path.isfile(path):
        raise ImageDecodeError(f'{where}: image file not found: {path}')
    if is_gzip(path):
        # HPA ships its 16-bit originals as <id>_<stain>.tif.gz: read through, never unpacked on disk.
        try:
            with gzip.open(path) as f:
                data = f.read()
        except (OSError, EOFError) as e:
            raise ImageDecodeError(f'{where}: cannot decompress {os.fspath(path)}: {type(e).__name__}: {e}') from None
        return _from_tiff(io.BytesIO(data), where, max_pixels) if data[:4] in TIFF_MAGIC else \
            _from_pil(data, where, max_pixels)
    return _from_tiff(path, where, max_pixels) if is_tiff(path) else _from_pil(path, where, max_pixels)


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


def is_plain_rgb(path: PathLike) -> bool:
    """An 8-bit RGB JPEG or PNG, which a prepared dataset can keep byte for byte."""
    if is_gzip(path) or is_tiff(path):
        return False
    with Image.open(path) as im:
        return im.format in ('JPEG', 'PNG') and im.mode == 'RGB'


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


def decode_rgb(path: PathLike, where: str, channels: Optional[Sequence[Channel]] = None,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[np.ndarray, dict]:
    """Any supported file -> (H, W, 3) uint8 and a record of what was done (for the manifest).

    Gray and RGB data deeper than 8 bits are windowed (RGB with one window for all three samples,
    which keeps hues); a multichannel stack (or a 4-sample file, when `channels` is given) needs
    `channels` with plane indices and is composed with per-channel windows."""
    d = decode(path, where, max_pixels)
    info: dict = {'source': d.kind, 'dtype': d.dtype}
    if d.kind == 'gray':
        plane, window = to_uint8(d.planes[0])
        info['window'] = window
        return np.repeat(plane[..., None], 3, axis=-1), info
    # With an explicit mapping, four samples are four stains: tifffile, like many writers, tags a
    # 4-plane stack as RGB + alpha, which has no meaning for fluorescence.
    if d.kind == 'rgb' or (d.kind == 'rgba' and not channels):
        rgb, window = to_uint8(d.planes[:3])
        info['window'] = window
        rgb = np.moveaxis(rgb, 0, -1)
        if d.kind == 'rgba':
            rgb = _flatten_alpha(rgb, d.planes[3])
        return rgb, info
    n = d.planes.shape[0]
    if not channels or any(c.index is None for c in channels if c.color != 'none'):
        raise ImageDecodeError(f'{where}: a {n}-plane image has no RGB meaning; it needs an explicit '
                               f'channel mapping (registry `channels` with a plane `index` for each stain)')
    planes, windows = {}, {}
    for c in channels:
        if c.color == 'none':
            continue
        if c.index >= n:
            raise ImageDecodeError(f'{where}: channel {c.name!r} is plane {c.index}, but the image has {n} planes')
        planes[c.name], windows[c.name] = to_uint8(d.planes[c.index])
    info['windows'] = windows
    return composite(planes, channels), info
