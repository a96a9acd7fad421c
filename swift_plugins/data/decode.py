"""What a run's model is handed for one image: decoded by the one decoder, checked against the
model family's limits, and encoded for ms-swift.

The loader (`rows.py`, inside `swift sft` / `swift infer`) and `medres tokens` (`sizes.py`) both call
`model_image` (tokens' `--headers-only` calls `model_size`), so they agree on every refusal: missing,
corrupt or truncated files, multi-page and multi-frame images, images over `MEDRES_MAX_IMAGE_PIXELS`,
four or more channels without a mapping, and sizes the run's model family refuses (Qwen2-VL: aspect
ratios over 200:1, after the resolution policy's resize). With `MEDRES_PAD_ASPECT=1` such an image is
padded instead: centred on black, to the nearest size the family accepts, and the row records it.
ms-swift gets the original bytes (or path) when PIL reads them exactly as decoded (8-bit RGB or gray
JPEG / PNG / WebP / BMP, upright, single-frame), otherwise a PNG of the decoded image.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image

from ..errors import ImageDecodeError
from ..resolution.families import Family, Size
from ..resolution.policy import ResolutionPolicy
from ..resolution.tokens import family_refusal, padded_size
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS, Env
from .channels import Source, decode_rgb, header_size, is_pil_source
from .images import exif_orientation, open_image
from .registry import Channel

# Formats whose 8-bit RGB / L files PIL (and so ms-swift) reads exactly as `decode_rgb` does.
KEEP_FORMATS = ('JPEG', 'PNG', 'WEBP', 'BMP')
PAD_VALUE = 0


@dataclass(frozen=True)
class DecodedImage:
    # What ms-swift opens: the original bytes or path when PIL reads them as decoded, else PNG bytes.
    payload: Union[bytes, str]
    width: int
    height: int
    source_mode: str        # what was stored, e.g. 'CMYK', 'I;16', 'RGB uint16 planar', 'DICOM MONOCHROME1'
    converted: bool         # True when `payload` is a PNG of the decoded image
    padded_from: Optional[Size] = None
    info: dict = field(default_factory=dict, compare=False)


def pad_to(rgb: np.ndarray, size: Size) -> np.ndarray:
    """`rgb` centred on a black canvas of `size` (width, height)."""
    w, h = size
    out = np.full((h, w, 3), PAD_VALUE, dtype=np.uint8)
    top, left = (h - rgb.shape[0]) // 2, (w - rgb.shape[1]) // 2
    out[top:top + rgb.shape[0], left:left + rgb.shape[1]] = rgb
    return out


def _refuse_or_pad(size: Size, where: str, family: Optional[Family], policy: Optional[ResolutionPolicy],
                   pad: bool) -> Optional[Size]:
    """None when the family accepts `size`; the padded size when it does not and `pad` is on; else raise."""
    reason = family_refusal(size, family, policy)
    if reason is None:
        return None
    if not pad:
        raise ImageDecodeError(f'{where}: {reason}; the model cannot encode it (set {Env.PAD_ASPECT}=1 to pad such '
                               f'images, or drop the row)')
    target = padded_size(size, family, policy)
    if target is None:
        raise ImageDecodeError(f'{where}: {reason}, and no padding of it is accepted either')
    return target


def _png(rgb: np.ndarray, gray: bool) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(rgb[..., 0], mode='L') if gray else Image.fromarray(rgb, mode='RGB')
    im.save(buf, format='PNG', compress_level=1)
    return buf.getvalue()


def _open_plain(source: Source, where: str, max_pixels: int) -> tuple[Optional[Image.Image], bool]:
    """For a source PIL decodes: the decoded image, and whether PIL reads it exactly as `decode_rgb`
    does (8-bit RGB / L in a kept format, upright), so no array is needed. (None, False) otherwise."""
    if not is_pil_source(source):
        return None, False
    opened = open_image(source if isinstance(source, (bytes, bytearray)) else os.fspath(source), where, max_pixels)
    return opened, (opened.format in KEEP_FORMATS and opened.mode in ('RGB', 'L') and exif_orientation(opened) == 1)


def model_image(source: Source, where: str, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                channels: Optional[Sequence[Channel]] = None, family: Optional[Family] = None,
                policy: Optional[ResolutionPolicy] = None, pad: bool = False) -> DecodedImage:
    """Decode `source` fully, apply the family's limits, and return what ms-swift will open."""
    opened, plain = _open_plain(source, where, max_pixels)
    if plain and family_refusal(opened.size, family, policy) is None:
        # Decoded (so a truncated file is refused here), and PIL reads it as stored: no array needed.
        payload = bytes(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
        return DecodedImage(payload, opened.width, opened.height, opened.mode, converted=False,
                            info={'source': 'gray' if opened.mode == 'L' else 'rgb', 'dtype': 'uint8',
                                  'format': opened.format, 'mode': opened.mode, 'orientation': 1})
    rgb, info = decode_rgb(source, where, channels, max_pixels, opened)
    h, w = rgb.shape[:2]
    target = _refuse_or_pad((w, h), where, family, policy, pad)
    if target is not None:
        rgb = pad_to(rgb, target)
        info['padded_from'] = [w, h]
    keep = (target is None and info['format'] in KEEP_FORMATS and info['mode'] in ('RGB', 'L')
            and info['dtype'] == 'uint8' and info['orientation'] == 1)
    if keep:
        payload = bytes(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    else:
        payload = _png(rgb, info['source'] == 'gray' and target is None)
    return DecodedImage(payload, rgb.shape[1], rgb.shape[0], info['mode'], converted=not keep,
                        padded_from=(w, h) if target is not None else None, info=info)


def decoded_size(source: Source, where: str, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 channels: Optional[Sequence[Channel]] = None) -> Size:
    """The size `model_image` decodes (before the family's limits), decoding fully as it does: what
    `medres tokens` measures by default."""
    opened, plain = _open_plain(source, where, max_pixels)
    if plain:
        return opened.size
    rgb, _ = decode_rgb(source, where, channels, max_pixels, opened)
    return rgb.shape[1], rgb.shape[0]


def model_size(source: Source, where: str, *, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
               family: Optional[Family] = None, policy: Optional[ResolutionPolicy] = None,
               pad: bool = False, channels: Optional[Sequence[Channel]] = None) -> Size:
    """The size `model_image` would hand the model, from headers only (what `medres tokens
    --headers-only` counts): the same refusals, except corrupt or truncated pixel data."""
    size = header_size(source, where, max_pixels, channels)
    return _refuse_or_pad(size, where, family, policy, pad) or size
