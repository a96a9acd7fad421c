"""Render a whole-slide image (SVS, pyramidal TIFF) once, at a pyramid level, within a pixel budget.

PIL cannot open gigapixel slides; tiffslide (pure Python, on tifffile) reads their pyramid levels.
The render is the level nearest (in log scale) to the target downsample, as stored, when it fits the
pixel budget; otherwise the coarsest level at least as large as the budget-fitting size, resampled
down to it (never up). A file with a single level is not a pyramidal slide and is refused.
"""
from __future__ import annotations

import math
import os
from typing import Union

import numpy as np
from PIL import Image

from ..errors import ImageDecodeError
from ..vocabulary import DEFAULT_MAX_IMAGE_PIXELS, PAPER_NATIVE_MAX_PIXELS, PAPER_SLIDE_DOWNSAMPLE, Env
from .images import ALPHA_BACKGROUND

# The paper renders at about 25% of level 0, "about 3000x4000" pixels: its native inference cap.
DEFAULT_DOWNSAMPLE = PAPER_SLIDE_DOWNSAMPLE
DEFAULT_MAX_PIXELS = PAPER_NATIVE_MAX_PIXELS


def _choose(dims: list[tuple[int, int]], downsamples: list[float], scale: float, max_pixels: int):
    """(level to read, output size, resized?) for a render at `scale` x level 0 within `max_pixels`."""
    target = math.log(1 / scale)
    nearest = min(range(len(dims)), key=lambda i: abs(math.log(downsamples[i]) - target))
    w, h = dims[nearest]
    if w * h <= max_pixels:
        return nearest, (w, h), False
    s = math.sqrt(max_pixels / (w * h))
    out = (max(1, math.floor(w * s)), max(1, math.floor(h * s)))
    source = max(i for i in range(len(dims)) if dims[i][0] >= out[0] and dims[i][1] >= out[1])
    return source, out, True


def render_slide(path: Union[str, os.PathLike], where: str, scale: float = DEFAULT_DOWNSAMPLE,
                 max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> tuple[Image.Image, dict]:
    """The slide as one RGB image, and what was read (for the manifest)."""
    import tiffslide  # imports zarr; only slide rendering needs it

    if not os.path.isfile(path):
        raise ImageDecodeError(f'{where}: slide file not found: {path}')
    slide = None
    try:
        # tiffslide parses lazily: the level geometry is where a broken file fails.
        slide = tiffslide.TiffSlide(path)
        dims = [tuple(map(int, d)) for d in slide.level_dimensions]
        downsamples = [float(d) for d in slide.level_downsamples]
    except Exception as e:  # tifffile / tiffslide raise many types for unreadable files
        if slide is not None:
            slide.close()
        raise ImageDecodeError(f'{where}: unreadable slide: {type(e).__name__}: {e}') from None
    with slide:
        if len(dims) < 2:
            raise ImageDecodeError(f'{where}: not a pyramidal slide (a single {dims[0][0]}x{dims[0][1]} level); '
                                   f'a whole-slide image needs its pyramid levels')
        level, out, resized = _choose(dims, downsamples, scale, max_pixels)
        w, h = dims[level]
        if w * h > max_image_pixels:
            raise ImageDecodeError(f'{where}: rendering needs level {level} ({w}x{h} = {w * h:,} pixels), over the '
                                   f'limit of {max_image_pixels:,} (raise {Env.MAX_IMAGE_PIXELS}, or lower --max-pixels)')
        try:
            arr = np.asarray(slide.read_region((0, 0), level, (w, h), as_array=True))
        except Exception as e:
            raise ImageDecodeError(f'{where}: cannot read level {level} ({w}x{h}): {type(e).__name__}: {e}') from None
    if arr.dtype != np.uint8:
        raise ImageDecodeError(f'{where}: level {level} holds {arr.dtype} samples, not 8-bit RGB')
    if arr.ndim == 3 and arr.shape[-1] == 4:
        # Slide scanners mark areas outside the scan transparent; they are background, as on glass.
        im = Image.new('RGB', (w, h), ALPHA_BACKGROUND)
        im.paste(Image.fromarray(arr, 'RGBA'), mask=Image.fromarray(arr[..., 3], 'L'))
    else:
        im = Image.fromarray(arr).convert('RGB')
    if resized:
        im = im.resize(out, Image.Resampling.LANCZOS, reducing_gap=3.0)
    info = {'level': level, 'level_downsample': downsamples[level], 'level_size': [w, h],
            'levels': len(dims), 'level0_size': list(dims[0]), 'render_size': list(im.size),
            'scale_vs_level0': round(im.size[0] / dims[0][0], 6), 'resized': resized}
    return im, info
