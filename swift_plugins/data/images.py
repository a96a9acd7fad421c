"""PIL-level primitives of the one image path: open and fully decode, window, convert modes.

PIL's own `convert('RGB')` clips 16-bit data to 255, drops alpha onto black and ignores ICC
profiles; ms-swift calls exactly that on every non-RGB image. Here each mode gets a deliberate
conversion and the full image is decoded once (so a truncated file fails at load time, naming its
row, not mid-training). `channels.decode_rgb` builds on these; `decode.py` is what runs call.
"""
from __future__ import annotations

import io
import os
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageCms

from ..errors import ImageDecodeError
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS, Env

# Percentiles for windowing >8-bit data into 8 bits; saturates at most 0.1% of pixels each side.
WINDOW_PERCENTILES = (0.1, 99.9)
# Transparent areas carry no signal; flatten them onto white as viewers and `convert -flatten` do.
ALPHA_BACKGROUND = (255, 255, 255)
EXIF_ORIENTATION = 0x0112


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
    frames = getattr(im, 'n_frames', 1)
    # MPO (camera JPEGs with a preview) is a primary image plus extras: the first frame is the image.
    if frames > 1 and im.format == 'TIFF':
        raise ImageDecodeError(
            f'{where}: multi-page TIFF ({frames} pages) has no single RGB meaning; '
            f'prepare it with `medres prepare` and an explicit channel mapping')
    if frames > 1 and im.format != 'MPO':
        raise ImageDecodeError(f'{where}: animated {im.format} ({frames} frames) has no single image; '
                               f'export the frame you mean')
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


def raise_pil_limit(max_pixels: int) -> None:
    """Let PIL open what medres admits. ms-swift and the model processors open images under PIL's
    process-wide decompression-bomb limit (an error above 2 x `Image.MAX_IMAGE_PIXELS`), which would
    refuse images that a raised `MEDRES_MAX_IMAGE_PIXELS` admits; medres refuses over its own limit
    before they get there. Called at the ms-swift boundary only; never lowers PIL's limit."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1-8; 1 = as stored), read from the header. A PNG's eXIf chunk is
    read only once its pixels are (PIL's `getexif` would decode them to look past them)."""
    if im.format == 'PNG' and 'exif' not in im.info:
        return 1
    try:
        value = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a malformed EXIF block is no orientation, as viewers treat it
        return 1
    return value if 1 <= value <= 8 else 1


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
