"""Where a registry dataset is read from: a local folder override, the entry's local folder, or a hub.

Every choice ends in the same ms-swift call (`hub.load_dataset(id_or_folder, subset, split)`),
so a local folder in the hub's own layout (`data/<split>-*.parquet`) is read by exactly the code
that reads the hub copy. `Settings.local_sources` (`MEDRES_LOCAL_SOURCES=<dir>`) makes `<dir>/<name>`
win for any entry that has such a folder: that is how offline machines, CI and the demo use the
registry unchanged.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import RegistryError
from ..settings import Settings
from ..vocabulary import Env
from .registry import Entry


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
            raise RegistryError(f"{entry.path}: field 'sources.local': folder {local} does not exist "
                                f'(prepare it first, e.g. `medres prepare {entry.name} --out {local}`)')
    s = entry.sources
    if use_hf and s.hf or (not s.ms and s.hf):
        return Source(s.hf, True, s.hf_revision, 'hf')
    if s.ms:
        return Source(s.ms, False, s.ms_revision, 'ms')
    raise RegistryError(f"{entry.path}: field 'sources': no source reachable for {entry.name} "
                        f'(use_hf={use_hf}, hf={s.hf}, ms={s.ms}, local={s.local})')
