"""`medres tokens`: visual tokens and compute a resolution policy costs, per split, from headers only.

Image sizes come from file headers (PIL reads them without decoding pixels), so 10^5 images
take seconds. Decisions (which rows of a mixed run are low) are drawn with the same functions,
seeds and quotas as the loader and templates, so the counts are the run's, not an estimate.
"""
from __future__ import annotations

import io
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from .families import Family
from .images import ImageDecodeError, image_payload
from .mixing import MixSlot, QuotaBook, sample_id
from .registry import Entry, get_entry
from .resolution import ResolutionPolicy
from .sources import resolve_source


@dataclass
class SplitCost:
    dataset: str
    split: str
    images: int
    low_images: int
    mean_tokens: float
    p95_tokens: float
    max_tokens: int
    total_tokens: int
    native_total_tokens: int

    @property
    def cost_vs_native(self) -> float:
        return self.total_tokens / self.native_total_tokens if self.native_total_tokens else float('nan')

    def as_dict(self) -> dict:
        return {**asdict(self), 'cost_vs_native': round(self.cost_vs_native, 4)}


def header_size(payload, where: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, (bytes, bytearray)) else payload) as im:
            return im.size
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot read the image header: {type(e).__name__}: {e}') from None


@dataclass
class SplitSizes:
    dataset: str
    modality: str
    split: str
    sizes: list[tuple[int, int]]


def registry_sizes(entry: Entry, split: str, use_hf: Optional[bool] = None) -> list[tuple[int, int]]:
    """(width, height) of every image of a registry split, in row order, from headers."""
    import datasets
    from datasets import Image as ImageFeature
    from swift.hub import get_hub

    source = resolve_source(entry, use_hf)
    verbosity = datasets.logging.get_verbosity()
    # ms-swift passes trust_remote_code, which `datasets` now logs as an error on every load.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        ds = get_hub(source.use_hf).load_dataset(source.dataset_id, entry.sources.subset,
                                                 entry.splits[split].hub_split, revision=source.revision)
    finally:
        datasets.logging.set_verbosity(verbosity)
    ds = getattr(ds, '_hf_ds', ds)
    col = entry.columns.image
    if isinstance(ds.features.get(col), ImageFeature):
        ds = ds.cast_column(col, ImageFeature(decode=False))
    base = source.dataset_id if source.kind.startswith('local') else None
    sizes = []
    with tqdm(total=len(ds), desc=f'{entry.name}:{split} headers', unit='img', leave=False) as bar:
        for batch in ds.select_columns([col]).iter(batch_size=1000):
            for value in batch[col]:
                payload = image_payload(value)
                if isinstance(payload, str) and base and not os.path.isabs(payload):
                    payload = os.path.join(base, payload)
                sizes.append(header_size(payload, f'{entry.registered_name} split={split} row={len(sizes)}'))
            bar.update(len(batch[col]))
    return sizes


def load_registry_sizes(specs: list[str], use_hf: Optional[bool] = None) -> list[SplitSizes]:
    """`specs` as in ms-swift's dataset syntax: `name` (all its splits) or `name:split[/split]`."""
    out = []
    for spec in specs:
        name, _, splits = spec.partition(':')
        entry = get_entry(name)
        for split in (splits.split('/') if splits else list(entry.splits)):
            if split not in entry.splits:
                raise ValueError(f'{entry.registered_name}: unknown split {split!r}; has {sorted(entry.splits)}')
            out.append(SplitSizes(entry.name, entry.modality, split, registry_sizes(entry, split, use_hf)))
    return out


def jsonl_sizes(path: Path) -> Iterator[tuple[int, int]]:
    """First image of each row of an ms-swift jsonl (`images` paths relative to the file or absolute)."""
    with open(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            row = json.loads(line)
            images = row.get('images') or []
            if not images:
                raise ImageDecodeError(f'{path} row={i}: no images')
            p = image_payload(images[0])
            if isinstance(p, str) and not os.path.isabs(p):
                p = str(path.parent / p)
            yield header_size(p, f'{path} row={i}')


def split_cost(name: str, split: str, sizes: list[tuple[int, int]], family: Family,
               policy: ResolutionPolicy, slots: Optional[list[MixSlot]]) -> SplitCost:
    tokens, native_tokens, low = [], [], 0
    for i, (w, h) in enumerate(sizes):
        decision = policy.decide(sample_id(name, split, i), slots[i] if slots else None)
        low += decision == 'low'
        tokens.append(policy.plan(w, h, decision, family).tokens)
        native_tokens.append(policy.plan(w, h, 'native', family).tokens)
    arr = np.asarray(tokens, dtype=np.int64) if tokens else np.zeros(1, dtype=np.int64)
    return SplitCost(name, split, len(sizes), low, float(arr.mean()), float(np.percentile(arr, 95)),
                     int(arr.max()), int(arr.sum()) if tokens else 0, int(sum(native_tokens)))


def policy_costs(splits: list[SplitSizes], family: Family, policy: ResolutionPolicy) -> list[SplitCost]:
    """Cost of each split under `policy`, drawing mixed decisions as a run loading them in this order."""
    book = QuotaBook()
    return [split_cost(sp.dataset, sp.split, sp.sizes, family, policy,
                       policy.slots(sp.dataset, sp.modality, sp.split, len(sp.sizes), book)) for sp in splits]


def jsonl_split_sizes(path: Path) -> SplitSizes:
    # A plain jsonl has no registry modality: it is its own balance group.
    sizes = list(tqdm(jsonl_sizes(path), desc=f'{path.name} headers', unit='img', leave=False))
    return SplitSizes(path.stem, f'file:{path}', 'file', sizes)


def humanize(n: float) -> str:
    for unit, div in (('G', 1e9), ('M', 1e6), ('k', 1e3)):
        if abs(n) >= div:
            return f'{n / div:.2f}{unit}'
    return f'{n:.0f}' if n == int(n) else f'{n:.1f}'


def fmt_ratio(x: float) -> str:
    return '-' if math.isnan(x) else f'{x:.3f}x'
