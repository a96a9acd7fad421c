"""Where a registry dataset is read from: a local folder override, the entry's local folder, or a hub.

Every choice ends in the same ms-swift call (`hub.load_dataset(id_or_folder, subset, split)`),
so a local folder in the hub's own layout (`data/<split>-*.parquet`) is read by exactly the code
that reads the hub copy. `Settings.local_sources` (`MEDRES_LOCAL_SOURCES=<dir>`) makes `<dir>/<name>`
win for any entry that has such a folder: that is how offline machines, CI and the demo use the
registry unchanged.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..errors import RegistryError
from ..settings import Settings
from ..vocabulary import PREPARED_DATASETS, Env
from .jsonl import json_objects
from .registry import Entry

MANIFEST = 'manifest.json'   # what `medres prepare` writes last into a complete folder


@dataclass(frozen=True)
class Source:
    dataset_id: str          # hub id or absolute local folder
    use_hf: bool
    revision: Optional[str]
    kind: str                # 'local-override' | 'local' | 'hf' | 'ms'

    def describe(self) -> str:
        return f'{self.kind}:{self.dataset_id}'


def _entry_local(entry: Entry, settings: Settings) -> Optional[Path]:
    if not entry.sources.local:
        return None
    # `${MEDRES_DATA_HOME}` in an entry is the settings' data home (the default one when unset).
    raw = entry.sources.local.replace('${' + Env.DATA_HOME + '}', str(settings.data_home))
    p = Path(os.path.expandvars(os.path.expanduser(raw)))
    if not p.is_absolute() and entry.path:
        p = Path(entry.path).parent / p
    return p


def resolve_source(entry: Entry, use_hf: Optional[bool], settings: Settings) -> Source:
    """Pick the source for `entry`; `use_hf` is ms-swift's hub choice (USE_HF / hf:: prefix)."""
    if settings.local_sources:
        candidate = Path(settings.local_sources) / entry.name
        if candidate.is_dir():
            return Source(str(candidate.resolve()), True, None, 'local-override')
    local = _entry_local(entry, settings)
    if local is not None:
        if local.is_dir():
            return Source(str(local.resolve()), True, None, 'local')
        if not (entry.sources.hf or entry.sources.ms):
            hint = (f'prepare it first: `medres prepare {entry.name} --raw <download> --out {local}`'
                    if entry.name in PREPARED_DATASETS else
                    'create it (data/<split>.jsonl with image paths relative to the folder, or the hub\'s '
                    'data/<split>-*.parquet) or point the field at the folder that holds the data')
            raise RegistryError(f"{entry.path}: field 'sources.local': folder {local} does not exist ({hint})")
    s = entry.sources
    if use_hf and s.hf or (not s.ms and s.hf):
        return Source(s.hf, True, s.hf_revision, 'hf')
    if s.ms:
        return Source(s.ms, False, s.ms_revision, 'ms')
    raise RegistryError(f"{entry.path}: field 'sources': no source reachable for {entry.name} "
                        f'(use_hf={use_hf}, hf={s.hf}, ms={s.ms}, local={s.local})')


@dataclass(frozen=True)
class RowCount:
    """What a split's row count must be, where that is stated, and whether a mismatch stops loading."""
    rows: int
    stated_in: str
    strict: bool


def expected_rows(entry: Entry, split: str, source: Source) -> Optional[RowCount]:
    """A prepared folder's manifest counts; else the entry's declared `rows`. A local override
    (`MEDRES_LOCAL_SOURCES`) without a manifest may be a deliberate subset: a mismatch only warns."""
    if source.kind.startswith('local'):
        manifest = Path(source.dataset_id) / MANIFEST
        try:
            counts = json.loads(manifest.read_text(encoding='utf-8')).get('counts') or {}
        except (OSError, ValueError):
            counts = None
        if counts is not None:
            hub_split = entry.splits[split].hub_split
            return RowCount(int(counts.get(hub_split, 0)), str(manifest), True) if hub_split in counts else None
    declared = entry.splits[split].rows
    if declared is None:
        return None
    return RowCount(declared, f"{entry.path}: field 'splits.{split}.rows'", source.kind != 'local-override')


def check_jsonl_files(folder: Path) -> None:
    """Every jsonl of a local source folder (top level and data/) is UTF-8 JSON, one object per line;
    otherwise a `DataError` naming the file and line (the json reader would name neither)."""
    files = sorted(folder.glob('*.jsonl')) + sorted((folder / 'data').rglob('*.jsonl'))
    for path in files:
        _check_jsonl(path, *_stamp(path))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@lru_cache(maxsize=256)
def _check_jsonl(path: Path, size: int, mtime: int) -> None:
    for _ in json_objects(path):
        pass
