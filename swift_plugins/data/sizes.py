"""Image sizes of a registry split or an ms-swift jsonl, in row order, from headers only.

PIL reads an image's size without decoding its pixels, so `medres tokens` counts 10^5 images in
seconds. The registry path reads the same source (local folder or hub) the loader reads.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Iterator, Optional

from PIL import Image
from tqdm import tqdm

from ..errors import ImageDecodeError
from ..resolution.tokens import SplitSizes
from ..settings import Settings
from .images import image_payload
from .registry import Entry, get_entry
from .sources import resolve_source
from .spec import DatasetSpec


def header_size(payload, where: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, (bytes, bytearray)) else payload) as im:
            return im.size
    except Exception as e:
        raise ImageDecodeError(f'{where}: cannot read the image header: {type(e).__name__}: {e}') from None


def registry_sizes(entry: Entry, split: str, settings: Settings,
                   use_hf: Optional[bool] = None) -> list[tuple[int, int]]:
    """(width, height) of every image of a registry split, in row order, from headers."""
    import datasets
    from datasets import Image as ImageFeature
    from swift.hub import get_hub

    source = resolve_source(entry, use_hf, settings)
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


def load_registry_sizes(specs: list[str], settings: Settings, use_hf: Optional[bool] = None) -> list[SplitSizes]:
    """`specs` as in ms-swift's dataset syntax: `name` (all its splits) or `name:split[/split]`."""
    out = []
    for text in specs:
        spec = DatasetSpec.parse(text)
        entry = get_entry(spec.name, settings.registry_dirs)
        for split in spec.resolve(entry, default=list(entry.splits)):
            out.append(SplitSizes(entry.name, entry.modality, split, registry_sizes(entry, split, settings, use_hf)))
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


def jsonl_split_sizes(path: Path) -> SplitSizes:
    # A plain jsonl has no registry modality: it is its own balance group.
    sizes = list(tqdm(jsonl_sizes(path), desc=f'{path.name} headers', unit='img', leave=False))
    return SplitSizes(path.stem, f'file:{path}', 'file', sizes)


