"""The images of a registry split or an ms-swift jsonl as the loader sees them, for `medres tokens`.

Every image goes through the loader's own decoder (`decode.decoded_size`, fully: a truncated file
is refused as it would be in the run), so the sizes are the run's (EXIF orientation applied) and
the rows the run would refuse are listed, not counted. `headers_only` reads sizes from headers
instead (10^5 images in seconds), with every refusal a header shows, but not corrupt or truncated
pixel data. The registry path reads the same source (local folder or hub) the loader reads, and
imports ms-swift only for a ModelScope source.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

from tqdm import tqdm

from ..errors import DataError, MedresError, UsageError
from ..resolution.tokens import SplitSizes
from ..settings import Settings
from .channels import header_size
from .decode import decoded_size
from .images import image_payload
from .jsonl import json_objects
from .registry import Channel, Entry, get_entry
from .sources import Source, check_jsonl_files, resolve_source
from .spec import DatasetSpec

# Below this many images a worker pool costs more than it saves.
POOL_MIN_IMAGES = 256
BATCH = 512


@dataclass(frozen=True)
class Measure:
    """How to measure an image: as the loader decodes it, or from its header."""
    max_pixels: int
    channels: Optional[tuple[Channel, ...]] = None
    headers_only: bool = False

    def __call__(self, item: tuple[int, object, str]) -> tuple[int, Optional[tuple[int, int]], Optional[str]]:
        index, payload, where = item
        try:
            if self.headers_only:
                return index, header_size(payload, where, self.max_pixels, self.channels), None
            return index, decoded_size(payload, where, max_pixels=self.max_pixels, channels=self.channels), None
        except MedresError as e:
            return index, None, str(e)
        except Exception as e:  # a decoder bug must still name its row
            return index, None, f'{where}: {type(e).__name__}: {e}'


def measure_all(batches: Iterable[list[tuple[int, object, str]]], total: int, measure: Measure, label: str,
                workers: int = 1) -> tuple[list[int], list[tuple[int, int]], list[tuple[int, str]]]:
    """(kept row indices, their sizes, refused (row, reason)) over the items of `batches`, in row
    order; batches keep at most one batch of image bytes in memory."""
    results = []
    pool = (ProcessPoolExecutor(workers, mp_context=get_context('forkserver'))
            if workers > 1 and total >= POOL_MIN_IMAGES else None)
    try:
        with tqdm(total=total, desc=f'{label} {"headers" if measure.headers_only else "images"}',
                  unit='img', leave=False) as bar:
            for batch in batches:
                results += pool.map(measure, batch, chunksize=16) if pool else map(measure, batch)
                bar.update(len(batch))
    finally:
        if pool:
            pool.shutdown()
    kept, sizes, refused = [], [], []
    for index, size, reason in results:
        if reason is None:
            kept.append(index)
            sizes.append(size)
        else:
            refused.append((index, reason))
    return kept, sizes, refused


def _load_split(entry: Entry, split: str, source: Source):
    """The split as the loader's ms-swift call reads it (hub or local folder), images undecoded."""
    import datasets

    hub_split = entry.splits[split].hub_split
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        if source.use_hf:
            # What ms-swift's HF hub does for a hub id or a local folder, without importing ms-swift.
            ds = datasets.load_dataset(source.dataset_id, name=entry.sources.subset, split=hub_split,
                                       revision=source.revision or 'main')
        else:
            from swift.hub import get_hub
            ds = get_hub(False).load_dataset(source.dataset_id, entry.sources.subset, hub_split,
                                             revision=source.revision)
            ds = getattr(ds, '_hf_ds', ds)
    finally:
        datasets.logging.set_verbosity(verbosity)
    return ds


def registry_sizes(entry: Entry, split: str, settings: Settings, source: Source, *, headers_only: bool = False,
                   workers: int = 1) -> SplitSizes:
    """The images of one registry split as the loader decodes them (see the module docstring)."""
    from datasets import Image as ImageFeature

    if source.kind.startswith('local'):
        check_jsonl_files(Path(source.dataset_id))
    ds = _load_split(entry, split, source)
    col = entry.columns.image
    if col not in ds.features:
        raise DataError(f"{entry.path}: field 'columns.image': column {col!r} is not in {entry.registered_name} "
                        f'split {split!r} (columns: {sorted(ds.features)})')
    if isinstance(ds.features.get(col), ImageFeature):
        ds = ds.cast_column(col, ImageFeature(decode=False))
    base = source.dataset_id if source.kind.startswith('local') else None
    missing: list[tuple[int, str]] = []

    def batches() -> Iterator[list[tuple[int, object, str]]]:
        i = 0
        for batch in ds.select_columns([col]).iter(batch_size=BATCH):
            items = []
            for value in batch[col]:
                where = f'{entry.registered_name} split={split} row={i}'
                payload = image_payload(value)
                if payload is None:
                    missing.append((i, f'{where}: the row has no image in column {col!r}'))
                elif isinstance(payload, str):
                    payload = os.path.join(base, payload) if base and not os.path.isabs(payload) else payload
                    items.append((i, payload, f'{where} file={payload}'))
                else:
                    items.append((i, payload, where))
                i += 1
            yield items

    measure = Measure(settings.max_image_pixels, tuple(entry.channels) if entry.channels else None, headers_only)
    kept, sizes, refused = measure_all(batches(), len(ds), measure, f'{entry.name}:{split}', workers)
    return SplitSizes(entry.name, entry.modality, split, sizes, kept, sorted(refused + missing))


def resolve_specs(specs: Sequence[str], settings: Settings, use_hf: Optional[bool] = None
                  ) -> list[tuple[Entry, str, Source]]:
    """Every (entry, split, source) the specs name, all checked before any data is read."""
    out = []
    for text in specs:
        spec = DatasetSpec.parse(text)
        entry = get_entry(spec.name, settings.registry_dirs)
        source = resolve_source(entry, use_hf, settings)
        out += [(entry, split, source) for split in spec.resolve(entry, default=list(entry.splits))]
    return out


def load_registry_sizes(specs: Sequence[str], settings: Settings, use_hf: Optional[bool] = None, *,
                        headers_only: bool = False, workers: int = 1) -> list[SplitSizes]:
    """`specs` as in ms-swift's dataset syntax: `name` (all its splits) or `name:split[/split]`."""
    return [registry_sizes(entry, split, settings, source, headers_only=headers_only, workers=workers)
            for entry, split, source in resolve_specs(specs, settings, use_hf)]


def _jsonl_rows(path: Path) -> Iterator[tuple[int, int, dict]]:
    """(row number, line number, row) of an ms-swift jsonl; bad encoding or JSON names the line."""
    if not path.is_file():
        raise UsageError(f'--jsonl {path}: no such file')
    for row, (line_no, value) in enumerate(json_objects(path)):
        yield row, line_no, value


def jsonl_split_sizes(path: Path, settings: Optional[Settings] = None, *, headers_only: bool = False,
                      workers: int = 1) -> SplitSizes:
    """The first image of each row of an ms-swift jsonl (`images` paths relative to the file or
    absolute). A plain jsonl has no registry modality: it is its own balance group."""
    settings = settings or Settings()
    items, refused = [], []
    for row, line_no, value in _jsonl_rows(path):
        where = f'{path}:{line_no} row={row}'
        images = value.get('images') or []
        payload = image_payload(images[0]) if images else None
        if payload is None:
            refused.append((row, f'{where}: the row has no image in "images"'))
            continue
        if isinstance(payload, str) and not os.path.isabs(payload):
            payload = str(path.parent / payload)
        items.append((row, payload, f'{where} file={payload}' if isinstance(payload, str) else where))
    kept, sizes, bad = measure_all([items], len(items), Measure(settings.max_image_pixels, None, headers_only),
                                   path.name, workers)
    return SplitSizes(path.stem, f'file:{path}', 'file', sizes, kept, sorted(refused + bad))
