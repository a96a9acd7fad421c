"""Decode one stored image and hand ms-swift an 8-bit RGB image without silent loss.

PIL's own `convert('RGB')` clips 16-bit data to 255, drops alpha onto black and ignores ICC
profiles; ms-swift calls exactly that on every non-RGB image. Here each mode gets a deliberate
conversion, the full image is decoded once (so a truncated file fails at load time, naming its
row, not mid-training), and images that are already 8-bit RGB or grayscale keep their bytes.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageCms

from ..errors import ImageDecodeError
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS, Env

# Percentiles for windowing >8-bit data into 8 bits; saturates at most 0.1% of pixels each side.
WINDOW_PERCENTILES = (0.1, 99.9)
# Transparent areas carry no signal; flatten them onto white as viewers and `convert -flatten` do.
ALPHA_BACKGROUND = (255, 255, 255)


@dataclass(frozen=True)
class DecodedImage:
    # What ms-swift opens: the original bytes or path when already 8-bit RGB / L, else PNG bytes.
    payload: Union[bytes, str]
    width: int
    height: int
    source_mode: str     # PIL mode as stored, e.g. 'CMYK', 'I;16'
    converted: bool      # True when `data` is a re-encoded PNG of a converted image


def pixel_limit_error(where: str, w: int, h: int, limit: int) -> ImageDecodeError:
    return ImageDecodeError(f'{where}: image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} '
                            f'(raise {Env.MAX_IMAGE_PIXELS} if this size is intended)')


def open_image(data: Union[bytes, str, os.PathLike], where: str,
               max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode; refuse images over `max_pixels` before decoding them."""
    limit = max_pixels
    try:
        im = Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    except FileNotFoundError:
        raise ImageDecodeError(f'{where}: image file not found: {data}') from None
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ImageDecodeError(f'{where}: cannot decode image: {type(e).__name__}: {e}') from None
    w, h = im.size
    if w * h > limit:
        raise pixel_limit_error(where, w, h, limit)
    if getattr(im, 'n_frames', 1) > 1 and im.format == 'TIFF':
        raise ImageDecodeError(
            f'{where}: multi-page TIFF ({im.n_frames} pages) has no single RGB meaning; '
            f'prepare it with `medres prepare` and an explicit channel mapping')
    try:
        # Our own limit is checked above; PIL's global one would reject what the user allowed.
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            im.load()
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot decode image ({w}x{h}, {im.mode}): '
                               f'{type(e).__name__}: {e}') from None
    return im


def percentile_window(arr: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES
                      ) -> Optional[tuple[float, float]]:
    """The raw values at the two percentiles of the finite data; None when there is none."""
    arr = np.asarray(arr, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, percentiles)
    return float(lo), float(hi)


def apply_window(arr: np.ndarray, window: Optional[tuple[float, float]]) -> np.ndarray:
    """Linearly map raw values [lo, hi] to [0, 255]; an empty or flat window maps to 0."""
    if window is None or window[1] <= window[0]:
        return np.zeros(np.shape(arr), dtype=np.uint8)
    lo, hi = window
    out = (np.nan_to_num(np.asarray(arr, dtype=np.float64), nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def window_to_uint8(arr: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """Linearly map [p_low, p_high] of the data to [0, 255]; constant images map to 0."""
    return apply_window(arr, percentile_window(arr, percentiles))


def _flatten_alpha(im: Image.Image) -> Image.Image:
    rgba = im.convert('RGBA')
    background = Image.new('RGB', rgba.size, ALPHA_BACKGROUND)
    background.paste(rgba, mask=rgba.getchannel('A'))
    return background


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB deliberately (see module docstring)."""
    mode = im.mode
    if mode == 'RGB':
        return im
    if mode in ('L', '1'):
        return im.convert('L').convert('RGB')
    if mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I', 'F'):
        return Image.fromarray(window_to_uint8(np.asarray(im))).convert('RGB')
    if mode == 'CMYK':
        icc = im.info.get('icc_profile')
        if icc:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, src, ImageCms.createProfile('sRGB'), outputMode='RGB')
        return im.convert('RGB')
    if mode == 'P':
        return _flatten_alpha(im) if 'transparency' in im.info else im.convert('RGB')
    if mode in ('LA', 'La', 'RGBA', 'RGBa', 'PA'):
        return _flatten_alpha(im)
    # YCbCr, LAB, HSV: PIL converts these colour spaces to RGB exactly.
    return im.convert('RGB')


def decode_to_rgb(data: Union[bytes, str, os.PathLike], where: str,
                  max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> DecodedImage:
    """Decode, validate and, where needed, convert to an 8-bit RGB PNG."""
    im = open_image(data, where, max_pixels)
    mode = im.mode
    if mode in ('RGB', 'L'):
        payload = bytes(data) if isinstance(data, (bytes, bytearray)) else os.fspath(data)
        return DecodedImage(payload, im.width, im.height, mode, converted=False)
    try:
        rgb = to_rgb(im)
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot convert {mode} image to RGB: {type(e).__name__}: {e}') from None
    buf = io.BytesIO()
    rgb.save(buf, format='PNG', compress_level=1)
    return DecodedImage(buf.getvalue(), rgb.width, rgb.height, mode, converted=True)


def image_payload(value) -> Optional[Union[bytes, str]]:
    """The bytes or path inside a datasets `Image(decode=False)` value, a path string or bytes."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get('bytes') or value.get('path')
    if isinstance(value, (bytes, bytearray, str)):
        return value
    if isinstance(value, Image.Image):
        buf = io.BytesIO()
        value.save(buf, format='PNG')
        return buf.getvalue()
    raise TypeError(f'unsupported image value of type {type(value).__name__}')
