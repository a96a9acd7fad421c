"""From an image's bytes to the pixels a resolution plan calls for, with an optional on-disk cache.

`load_policy_image` is the template-side decode of a policy run: the plan comes from the header
size (EXIF orientation applied), a JPEG shrunk by 2x or more is decoded at reduced size by libjpeg
(`ResolutionPolicy.draft`), then the one resize (or crop / pad) to the plan. With `ImageCache`
(`MEDRES_IMAGE_CACHE=<dir>`) the result is stored under a key of the source bytes' hash, the plan
and everything else that shapes the pixels (filter, alignment, draft), so later epochs and other
runs at the same resolution (grid cells sharing an inference resolution) skip decoding the
original. Entries are raw RGB arrays (`.npy`): lossless, and loading one costs a file read.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import ExifTags, Image, ImageOps

from .families import Family
from .policy import Plan, ResolutionPolicy

# Bump when the same key could give different pixels (a change in how images are decoded or resized).
CACHE_FORMAT = 1
_ORIENTATION = ExifTags.Base.Orientation
_TRANSPOSED = {5, 6, 7, 8}   # EXIF orientations that swap width and height


@dataclass
class ImageCache:
    """A folder of policy-resized images, bounded to `max_bytes`.

    Safe with many dataloader workers and runs at once: an entry is written to a temporary file
    and renamed into place (readers see a whole entry or none); when the folder outgrows the bound,
    the oldest entries are deleted down to 90% of it (a reader losing that race reads a miss).
    Counters are per process.
    """
    root: Path
    max_bytes: int
    hits: int = 0
    misses: int = 0
    _approx_bytes: Optional[int] = field(default=None, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)

    @property
    def folder(self) -> Path:
        return self.root / f'v{CACHE_FORMAT}'

    @staticmethod
    def key(digest: str, plan: Plan, policy: ResolutionPolicy) -> str:
        """The entry of `digest` (the source bytes' hash) under `plan`: what decides the pixels."""
        shape = {'source': plan.source, 'size': plan.size, 'via': plan.via, 'align': plan.align,
                 'filter': policy.filter, 'draft': policy.jpeg_draft, 'pillow': Image.__version__}
        return hashlib.blake2b(f'{digest}:{json.dumps(shape, sort_keys=True)}'.encode(), digest_size=20).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f'{key}.npy'

    def get(self, key: str) -> Optional[Image.Image]:
        try:
            array = np.load(self._path(key), allow_pickle=False)
        except (FileNotFoundError, ValueError, EOFError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return Image.fromarray(array, 'RGB')

    def put(self, key: str, image: Image.Image) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix='.tmp-', suffix='.npy')
        try:
            with os.fdopen(fd, 'wb') as f:
                np.save(f, np.asarray(image if image.mode == 'RGB' else image.convert('RGB')), allow_pickle=False)
            size = os.path.getsize(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self._approx_bytes is None:
            self._approx_bytes = self.size_bytes()
        else:
            self._approx_bytes += size
        if self._approx_bytes > self.max_bytes:
            self._approx_bytes = self.evict()

    def _entries(self) -> list[os.DirEntry]:
        out = []
        if self.folder.is_dir():
            for sub in os.scandir(self.folder):
                if sub.is_dir():
                    out += [e for e in os.scandir(sub.path) if e.name.endswith('.npy') and not e.name.startswith('.')]
        return out

    def size_bytes(self) -> int:
        total = 0
        for e in self._entries():
            try:
                total += e.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def evict(self) -> int:
        """Delete the oldest entries until the folder holds at most 90% of the bound; its new size."""
        stats = []
        for e in self._entries():
            try:
                st = e.stat()
            except FileNotFoundError:
                continue
            stats.append((st.st_mtime_ns, st.st_size, e.path))
        total = sum(s for _, s, _ in stats)
        if total <= self.max_bytes:
            return total
        for _, size, path in sorted(stats):
            if total <= 0.9 * self.max_bytes:
                break
            try:
                os.unlink(path)
                total -= size
            except FileNotFoundError:
                pass
        return total

    @property
    def hit_rate(self) -> float:
        n = self.hits + self.misses
        return self.hits / n if n else float('nan')


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1: as stored), read from the header without decoding pixels."""
    if image.format == 'PNG' and 'exif' not in image.info:
        return 1  # PIL would decode the whole PNG to look for a trailing eXIf chunk
    try:
        return int(image.getexif().get(_ORIENTATION, 1) or 1)
    except Exception:  # a malformed EXIF block: the pixels are still fine, take them as stored
        return 1


def load_policy_image(data: bytes, policy: ResolutionPolicy, decision: str, family: Family,
                      cache: Optional[ImageCache] = None) -> tuple[Image.Image, Plan, Optional[bool]]:
    """The RGB image `policy` gives the model for an encoded image file, its plan, and whether it
    came from `cache` (None without one). EXIF orientation is applied before planning."""
    image = Image.open(io.BytesIO(data))
    turn = orientation(image)
    w, h = (image.height, image.width) if turn in _TRANSPOSED else image.size
    plan = policy.plan(w, h, decision, family)
    key = None
    if cache is not None:
        key = cache.key(hashlib.blake2b(data, digest_size=20).hexdigest(), plan, policy)
        hit = cache.get(key)
        if hit is not None:
            return hit, plan, True
    policy.draft(image, plan, transposed=turn in _TRANSPOSED)
    if turn != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode == 'L':   # one channel through the filter, then replicated: the same pixels, 3x less work
        out = policy.realize(image, plan).convert('RGB')
    else:
        out = policy.realize(image if image.mode == 'RGB' else image.convert('RGB'), plan)  # as ms-swift's load_image
    if cache is not None:
        cache.put(key, out)
        return out, plan, False
    return out, plan, None
