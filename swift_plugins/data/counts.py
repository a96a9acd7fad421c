"""How many rows a training run will read, without loading the data (for `medres train`'s warnings).

A local folder is resolved to its split files exactly as `datasets.load_dataset(folder)` resolves
them (its dataset card's `configs`, else its file-name patterns), then counted from the files
themselves: jsonl lines, parquet metadata. A hub source gives the `rows` its registry entry states.
Anything else (a hub id outside the registry, a streamed or scripted dataset) is unknown: None.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Iterable, Optional

from ..settings import Settings
from ..vocabulary import NAMESPACE
from .registry import Entry, get_entry
from .sources import resolve_source
from .spec import DatasetSpec

logger = logging.getLogger(__name__)


def file_rows(path: Path) -> Optional[int]:
    """Rows of one data file by its format; None for a format not counted here or a file that
    cannot be read (counting is advice: the run's own loading reports a broken file)."""
    try:
        return _file_rows(path)
    except (OSError, ValueError, ImportError) as e:
        logger.debug(f'medres: cannot count the rows of {path}: {type(e).__name__}: {e}')
        return None


def _file_rows(path: Path) -> Optional[int]:
    name = path.name.lower()
    if name.endswith('.jsonl'):
        with open(path, 'rb') as f:
            return sum(1 for line in f if line.strip())
    if name.endswith('.json'):
        with open(path, 'rb') as f:
            head = f.read(64).lstrip()
        if head.startswith(b'['):
            return len(json.loads(path.read_bytes()))
        with open(path, 'rb') as f:
            return sum(1 for line in f if line.strip())
    if name.endswith('.parquet'):
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    if name.endswith(('.csv', '.tsv')):
        with open(path, newline='') as f:
            return max(0, sum(1 for _ in csv.reader(f, delimiter='\t' if name.endswith('.tsv') else ',')) - 1)
    return None


def folder_split_files(folder: Path, subset: Optional[str], split: str) -> Optional[list[Path]]:
    """The files `datasets.load_dataset(folder, subset, split=split)` reads; None when it cannot tell."""
    import datasets
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        builder = datasets.load_dataset_builder(str(folder), subset)
    except Exception:
        return None
    finally:
        datasets.logging.set_verbosity(verbosity)
    files = (builder.config.data_files or {}).get(split)
    return [Path(str(f)) for f in files] if files else None


def _sum(counts: Iterable[Optional[int]]) -> Optional[int]:
    counts = list(counts)
    return None if not counts or any(c is None for c in counts) else sum(counts)


def split_rows(entry: Entry, split: str, settings: Settings) -> Optional[int]:
    """Rows of one split of a registry entry: counted from a local folder's files, else the entry's `rows`."""
    source = resolve_source(entry, None, settings)
    hub_split = entry.splits[split].hub_split
    if source.kind.startswith('local'):
        files = folder_split_files(Path(source.dataset_id), entry.sources.subset, hub_split)
        if files:
            return _sum(file_rows(f) for f in files)
        return None
    return entry.splits[split].rows


def dataset_rows(text: str, settings: Settings) -> Optional[int]:
    """Rows a `--dataset` value gives a run: a registry reference (`medres/<name>[:<split>...][#<n>]`),
    a local data file, or `<anything>#<n>`; None when that cannot be known without loading it."""
    text = text.strip()
    if text.startswith(f'{NAMESPACE}/'):
        spec = DatasetSpec.parse(text)
        if spec.rows:
            return spec.rows
        entry = get_entry(spec.name, settings.registry_dirs)
        return _sum(split_rows(entry, s, settings) for s in spec.resolve(entry))
    sample = re.fullmatch(r'(.*)#(\d+)', text)
    if sample:
        return int(sample.group(2))
    path = Path(text).expanduser()
    return file_rows(path) if path.is_file() else None


def run_rows(datasets: Iterable[str], settings: Settings, split_ratio: float = 0.0) -> Optional[int]:
    """Training rows of a run: its `--dataset` values summed, less the share `--split_dataset_ratio`
    carves off for validation (as `datasets`' train_test_split rounds it, up)."""
    total = _sum(dataset_rows(d, settings) for d in datasets)
    if total is None or not split_ratio or split_ratio <= 0:
        return total
    return total - math.ceil(total * split_ratio)
