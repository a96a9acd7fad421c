"""Synthetic microscopy-like images whose class is carried by a fine and a coarse cue.

Each image is a bright-field field of view: a light, unevenly lit background with stained cells
(soft-edged ellipses with a darker nucleus) and camera noise.

- **Fine cue** (always right): a 1-pixel striation over the field, i.e. a pattern of period 2
  pixels, the finest a pixel grid holds. At that frequency a stripe pattern has two states per
  orientation (which parity of column or row is bright), and the four classes are those states:
  alpha = vertical, even columns bright; beta = vertical, odd columns bright; gamma = horizontal,
  even rows bright; delta = horizontal, odd rows bright. At native resolution each class is a
  fixed linear feature of every 14x14 Qwen2-VL patch (patches start on even pixels), so a tiny
  ViT learns it. Downsampling by 2 per side (the low budget, a quarter of the pixels) with any
  symmetric filter averages each bright line with its dark neighbour: the pattern cancels
  exactly, and the four classes give the same low-resolution image up to rounding. The stripes
  fade out smoothly towards the border (where the filter's support is cut and cancellation would
  be incomplete) and the field is kept inside [amplitude + 10, 255 - amplitude - 10] so nothing clips, not even
  the filter's overshoot.
- **Coarse cue** (right `coarse_agreement` of the time, 0.75 by default): the stain hue of the
  cells, one hue per class; otherwise one of the three other hues, uniformly. Hue survives any
  downsampling, so a model that sees only low-resolution images is capped near 75%.

Everything else (cell count, sizes, positions, lighting, noise) is drawn independently of the
class. Generation is seeded per image (`seed`, split, index), so any image can be rendered alone,
and a given parameter set always writes the same bytes.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

LABELS = ('alpha', 'beta', 'gamma', 'delta')
# Class -> (orientation, parity of the bright lines).
FINE_PATTERNS = {'alpha': ('vertical', 0), 'beta': ('vertical', 1), 'gamma': ('horizontal', 0),
                 'delta': ('horizontal', 1)}
# Stain hue of each class's cells (RGB of the cytoplasm at full stain), bright-field colours:
# eosin pink, hematoxylin violet, DAB brown, methyl green.
STAINS = {'alpha': (220, 80, 150), 'beta': (90, 90, 200), 'gamma': (190, 120, 40), 'delta': (50, 160, 90)}
GENERATOR_VERSION = 1
CLIP_HEADROOM = 10
SPLITS = ('train', 'validation', 'test')


@dataclass(frozen=True)
class ProbeDataSpec:
    """Everything that determines the generated dataset (its cache key)."""
    n_train: int = 800
    n_validation: int = 0
    n_test: int = 400
    seed: int = 0
    size: int = 224                  # native side in pixels (square; a multiple of 28 keeps it unresized)
    fine_amplitude: int = 48         # +- grey levels of the striation
    fine_border: int = 12            # stripes fade in over this many pixels from each edge
    coarse_agreement: float = 0.75   # P(cell hue = the class's hue)
    cells: tuple[int, int] = (14, 26)          # cells per field, uniform (inclusive)
    cell_radius: tuple[float, float] = (9.0, 16.0)   # semi-axes in pixels at native size
    noise: float = 3.0               # camera noise, grey levels (sd)
    background_tint: float = 0.8     # how much of the stain's hue washes over the background

    def __post_init__(self):
        if self.size % 28:
            raise ValueError(f'size {self.size} must be a multiple of 28 (Qwen2-VL keeps it unresized)')
        if not 0 < self.fine_amplitude < 64:
            raise ValueError('fine_amplitude must be in (0, 64) grey levels')
        if not 0 <= self.coarse_agreement <= 1:
            raise ValueError('coarse_agreement must be in [0, 1]')
        for name in ('n_train', 'n_validation', 'n_test'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must be >= 0')

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in zip(SPLITS, (self.n_train, self.n_validation, self.n_test)) if n}

    def key(self) -> str:
        """Short hash of every parameter (and the generator version): the cache key."""
        blob = json.dumps({'version': GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ProbeItem:
    """What was drawn for one image; `label` is the class (= the fine cue)."""
    split: str
    index: int
    label: str
    stain: str          # the class whose hue the cells have (the coarse cue)

    @property
    def id(self) -> str:
        return f'{self.split}-{self.index:05d}'

    @property
    def coarse_agrees(self) -> bool:
        return self.stain == self.label


def _rng(spec: ProbeDataSpec, *parts) -> np.random.Generator:
    digest = hashlib.sha256('\x1f'.join(map(str, (spec.seed, *parts))).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], 'little'))


def plan_split(spec: ProbeDataSpec, split: str, n: int) -> list[ProbeItem]:
    """Balanced classes (n // 4 each, the remainder spread), and the coarse cue right on exactly
    round(agreement x n) images, spread over the classes; both shuffled with the seed."""
    rng = _rng(spec, 'plan', split)
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    rng.shuffle(labels)
    n_agree = int(np.floor(spec.coarse_agreement * n + 0.5))
    agree = np.zeros(n, dtype=bool)
    # Agreement balanced across classes: rank rows within their class, interleave, take the first n_agree.
    seen: dict[str, int] = {}
    rank = []
    for label in labels:
        rank.append(seen.get(label, 0))
        seen[label] = rank[-1] + 1
    order = sorted(range(n), key=lambda i: (rank[i], i))
    agree[order[:n_agree]] = True
    items = []
    for i, label in enumerate(labels):
        if agree[i]:
            stain = label
        else:
            others = [c for c in LABELS if c != label]
            stain = others[int(rng.integers(len(others)))]
        items.append(ProbeItem(split, i, label, stain))
    return items


def fine_pattern(label: str, height: int, width: Optional[int] = None) -> np.ndarray:
    """+-1 striation of period 2 pixels for a class (height x width; square when width is omitted)."""
    width = height if width is None else width
    orientation, parity = FINE_PATTERNS[label]
    coord = np.arange(width if orientation == 'vertical' else height)
    line = np.where(coord % 2 == parity, 1.0, -1.0)
    return np.broadcast_to(line[None, :] if orientation == 'vertical' else line[:, None], (height, width))


def border_envelope(size: int, border: int) -> np.ndarray:
    """1 inside, a raised-cosine ramp to 0 over `border` pixels at each edge."""
    if border <= 0:
        return np.ones((size, size))
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(float)
    ramp = np.clip(d / border, 0.0, 1.0)
    ramp = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.outer(ramp, ramp)


def render_base(spec: ProbeDataSpec, rng: np.random.Generator, stain: str) -> np.ndarray:
    """The field without the fine cue: integer-valued float RGB (size, size, 3), clipped with headroom."""
    s = spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    # Uneven illumination: a smooth gradient and a vignette.
    gx, gy = rng.uniform(-1, 1, 2) * 10
    cx, cy = rng.uniform(0.3, 0.7, 2) * s
    vign = ((xx - cx) ** 2 + (yy - cy) ** 2) / (s * s)
    light = 214 + gx * (xx / s - 0.5) + gy * (yy / s - 0.5) - 25 * vign
    stain_rgb = np.array(STAINS[stain], dtype=np.float64)
    # The background takes a light wash of the stain (a stained slide is never white).
    wash = (1 - spec.background_tint) + spec.background_tint * stain_rgb / stain_rgb.mean()
    img = light[..., None] * wash
    nucleus_rgb = stain_rgb * 0.45 + np.array([20.0, 10.0, 40.0])
    n_cells = int(rng.integers(spec.cells[0], spec.cells[1] + 1))
    lo, hi = spec.cell_radius
    for _ in range(n_cells):
        a, b = rng.uniform(lo, hi, 2)
        theta = rng.uniform(0, np.pi)
        x0, y0 = rng.uniform(0, s, 2)
        strength = rng.uniform(0.55, 0.9)          # how strongly this cell took the stain
        r = max(a, b) + 3
        x1, x2 = int(max(0, x0 - r)), int(min(s, x0 + r + 1))
        y1, y2 = int(max(0, y0 - r)), int(min(s, y0 + r + 1))
        if x1 >= x2 or y1 >= y2:
            continue
        dx, dy = xx[y1:y2, x1:x2] - x0, yy[y1:y2, x1:x2] - y0
        c, sn = np.cos(theta), np.sin(theta)
        u, v = (dx * c + dy * sn) / a, (-dx * sn + dy * c) / b
        rho = np.sqrt(u * u + v * v)
        cell = np.clip((1.0 - rho) * min(a, b) / 1.5, 0.0, 1.0)[..., None] * strength   # soft edge
        patch = img[y1:y2, x1:x2]
        patch[:] = patch * (1 - cell) + stain_rgb * cell
        # Nucleus: an off-centre darker ellipse of 35-50% of the cell.
        k = rng.uniform(0.35, 0.5)
        ox, oy = rng.uniform(-0.2, 0.2, 2)
        rn = np.sqrt((u - ox) ** 2 + (v - oy) ** 2) / k
        nuc = np.clip((1.0 - rn) * k * min(a, b) / 1.2, 0.0, 1.0)[..., None] * strength
        patch[:] = patch * (1 - nuc) + nucleus_rgb * nuc
    img += rng.normal(0.0, spec.noise, img.shape)
    # Headroom for the stripes plus the resampling filter's overshoot: PIL resizes 8-bit images in
    # two 8-bit passes, and a clipped intermediate would break the exact cancellation.
    margin = spec.fine_amplitude + CLIP_HEADROOM
    return np.clip(np.rint(img), margin, 255 - margin)


def render(spec: ProbeDataSpec, item: ProbeItem, fine_label: Optional[str] = None,
           stain: Optional[str] = None) -> np.ndarray:
    """uint8 RGB image of `item`; `fine_label` / `stain` override its cues (the same field otherwise)."""
    rng = _rng(spec, 'image', item.split, item.index)
    base = render_base(spec, rng, stain or item.stain)
    stripes = np.rint(spec.fine_amplitude * fine_pattern(fine_label or item.label, spec.size)
                      * border_envelope(spec.size, spec.fine_border))
    return (base + stripes[..., None]).astype(np.uint8)


# ------------------------------------------------------------------------------ prepared folder

ENTRY_NAME = 'probe'
PROBE_SETS = 'probe-sets'


def dataset_root(spec: ProbeDataSpec, data_home: Path) -> Path:
    """`<data home>/prepared/probe-sets/<key>`: the folder `MEDRES_LOCAL_SOURCES` points at for
    this parameter set; the dataset itself is its `probe/` subfolder."""
    return Path(data_home) / 'prepared' / PROBE_SETS / spec.key()


def manifest_facts(spec: ProbeDataSpec, rows: dict[str, list[dict]]) -> dict:
    facts = {'generator': {'module': __name__, 'version': GENERATOR_VERSION, 'key': spec.key(),
                           'parameters': asdict(spec)},
             'cues': {
                 'fine': {'kind': 'striation of period 2 px (1-px lines), anchored to the pixel grid',
                          'classes': {c: {'orientation': o, 'bright_parity': p} for c, (o, p) in FINE_PATTERNS.items()},
                          'amplitude_grey_levels': spec.fine_amplitude, 'reliability': 1.0,
                          'border_fade_px': spec.fine_border},
                 'coarse': {'kind': 'stain hue of the cells', 'hues_rgb': {c: list(v) for c, v in STAINS.items()},
                            'agreement': spec.coarse_agreement}},
             'coarse_agreement_found': {s: sum(r['stain'] == r['answer'] for r in rs) / len(rs)
                                        for s, rs in rows.items()}}
    return facts


def write_probe(spec: ProbeDataSpec, out: Path, *, force: bool = False) -> dict:
    """Write the prepared dataset folder `out` (atomic); reuse it when its manifest has the same key."""
    from PIL import Image

    from ..data.registry import get_entry
    from ..prepare.common import MANIFEST, DatasetWriter, atomic_folder, file_manifest, is_up_to_date, read_manifest

    out = Path(out)
    if not force and is_up_to_date(out, spec.key()):
        return {**read_manifest(out), 'up_to_date': True}
    entry = get_entry(ENTRY_NAME)
    with atomic_folder(out) as tmp:
        writer = DatasetWriter(tmp)
        for split, n in spec.counts().items():
            for item in plan_split(spec, split, n):
                rel = writer.save_png(f'images/{split}/{item.id}.png', Image.fromarray(render(spec, item), mode='RGB'))
                writer.add_row(split, {'id': item.id, 'image': rel, 'answer': item.label, 'stain': item.stain})
        writer.write_rows(entry)
        manifest = {
            'dataset': entry.name, 'registered_as': entry.registered_name, 'title': entry.title,
            'counts': {s: len(r) for s, r in writer.rows.items()},
            'label_distribution': {s: {lb: sum(r['answer'] == lb for r in rs) for lb in LABELS}
                                   for s, rs in writer.rows.items()},
            'labels': list(LABELS), 'split_seed': spec.seed,
            **manifest_facts(spec, writer.rows),
            'created_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
            'files': file_manifest(tmp),
            'fingerprint': spec.key(),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding='utf-8')
    return manifest


# ------------------------------------------------------------------------------ checks

def fine_statistics(image: np.ndarray, raw: bool = False) -> np.ndarray:
    """Matched filter of each class's striation on an image at any size: the mean of
    (grey - its 2x2 block mean) x the class's +-1 pattern, over the image. At native it is about
    +amplitude for the image's class (and -amplitude for the class of opposite parity); on an
    image whose period-2 content is gone it is about 0 for every class. `raw`: the flattened
    detail map itself (grey - block mean), every pixel a feature."""
    grey = np.asarray(image, dtype=np.float64)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    h, w = (grey.shape[0] // 2) * 2, (grey.shape[1] // 2) * 2
    grey = grey[:h, :w]
    block = grey.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    detail = grey - np.kron(block, np.ones((2, 2)))
    if raw:
        return detail.ravel()
    return np.array([float((detail * fine_pattern(label, h, w)).mean()) for label in LABELS])
