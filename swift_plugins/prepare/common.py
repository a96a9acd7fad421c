"""What every `medres prepare` converter shares: the bad-input policy, the atomic writer, the
manifest and the up-to-date check.

Converters decode and write images on `--workers` processes (`parallel_map`: results come back in
input order, so the output is the same for any number of workers).

A prepared dataset is `<out>/data/<split>.jsonl` (image paths relative to `<out>`),
`<out>/images/...`, `<out>/README.md` (a dataset card naming the split files) and
`<out>/manifest.json`. It is built in a hidden sibling folder and renamed
into place only when complete, so `<out>` (the folder the registry entry loads) is never half
written. The manifest records an input fingerprint (converter version, options, the registry facts
used, and the size and mtime of every raw file read); a second run with the same fingerprint is a
no-op that says so.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np
import yaml
from PIL import Image
from rich.console import Console

from ..data.registry import Entry
from ..errors import PrepareError
from ..settings import Settings
from ..vocabulary import BAD_ROW_MODES, Env

T = TypeVar('T')
R = TypeVar('R')
ON_ERROR_CHOICES = BAD_ROW_MODES
MANIFEST = 'manifest.json'
CARD = 'README.md'
# Images decoded before the split is drawn: a split is drawn over the items that decoded, so a bad
# file never costs the test split a row (`--test-size N` gives N).
STAGING = 'images/.staged'
# Held (flock) by the run building a `.partial-*` folder; removed before the folder becomes `out`.
LOCK = '.medres-build.lock'
console = Console(stderr=True, soft_wrap=True)


class Report:
    """Bad input (an error, or with `--on-error skip` a listed skip) and documented exclusions."""

    def __init__(self, dataset: str, on_error: str) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise ValueError(f'on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}')
        self.dataset = dataset
        self.on_error = on_error
        self.skipped: list[dict] = []
        self.excluded: dict[str, list] = {}

    def bad(self, item: str, reason: str, **details: Any) -> None:
        """Stop naming `item`, or (skip mode) record it; the caller leaves the item out."""
        if self.on_error == 'error':
            raise PrepareError(f'{self.dataset}: {item}: {reason} '
                               f'(run with --on-error skip to skip such items; they are listed in {MANIFEST})')
        self.skipped.append({'item': item, 'reason': reason, **details})

    def exclude(self, rule: str, item: Any) -> None:
        """An item a documented rule of the converter leaves out (not bad input)."""
        self.excluded.setdefault(rule, []).append(item)

    def excluded_summary(self) -> dict:
        return {rule: {'count': len(items), 'items': items} for rule, items in self.excluded.items()}


@dataclass
class Context:
    entry: Entry
    raw: Path
    out: Path
    seed: int
    on_error: str
    options: dict
    report: Report
    settings: Settings = field(default_factory=Settings)
    workers: int = 1

    @property
    def max_pixels(self) -> int:
        """The image size limit every decode of this run honours."""
        return self.settings.max_image_pixels


@dataclass
class Plan:
    """What a build will do, known before any image is decoded."""
    items: list
    # Every raw file the build reads, present or not: their sizes and mtimes fingerprint the run.
    inputs: list[Path]
    # Manifest facts settled by planning: split rule, test groups, exclusions summary, ...
    facts: dict = field(default_factory=dict)


class Converter:
    """One raw source -> one registry entry. Subclasses implement `plan` and `build`."""
    name: str = ''          # the registry entry it prepares
    version: int = 1        # bump when the same input would give different output
    help: str = ''
    raw_help: str = ''

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Dataset-specific options of `medres prepare <name>`."""

    def plan(self, ctx: Context) -> Plan:
        raise NotImplementedError

    def build(self, ctx: Context, plan: Plan, writer: 'DatasetWriter') -> dict:
        """Write images and rows; return extra manifest facts (windows, renders, ...)."""
        raise NotImplementedError


class DatasetWriter:
    """Files and rows of one prepared dataset, written under a temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: dict[str, list[dict]] = {}

    def path(self, rel: str) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def _new_image(self, rel: str) -> Path:
        p = self.path(rel)
        if p.exists():
            # Two ids that differ only in characters safe_name() replaces.
            raise PrepareError(f'two items map to the same image file {rel}')
        return p

    def save_png(self, rel: str, rgb: np.ndarray | Image.Image) -> str:
        im = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb, mode='RGB')
        with self._open_new(rel) as f:
            im.save(f, format='PNG')
        return rel

    def copy(self, src: Path, rel: str) -> str:
        with open(src, 'rb') as fsrc, self._open_new(rel) as fdst:
            shutil.copyfileobj(fsrc, fdst)
        return rel

    def staged(self, name: str) -> str:
        """Where an image waits while its split is not known yet (see `settle`)."""
        return f'{STAGING}/{name}'

    def settle(self, rel: str, split: str) -> str:
        """Move a staged image into `images/<split>/` once the split is drawn."""
        new_rel = f'images/{split}/' + rel.removeprefix(STAGING + '/')
        os.replace(self.root / rel, self._new_image(new_rel))
        return new_rel

    def clear_staging(self) -> None:
        shutil.rmtree(self.root / STAGING, ignore_errors=True)

    @contextmanager
    def _open_new(self, rel: str):
        # Exclusive creation: two items mapped to one file are caught even when two workers write them.
        try:
            f = open(self._new_image(rel), 'xb')
        except FileExistsError:
            raise PrepareError(f'two items map to the same image file {rel}') from None
        with f:
            yield f

    def files(self) -> 'DatasetWriter':
        """A writer of the same root without the rows: what a worker process needs to write images."""
        return DatasetWriter(self.root)

    def add_row(self, split: str, row: dict) -> None:
        self.rows.setdefault(split, []).append(row)

    def write_rows(self, entry: Entry) -> None:
        for split, rows in self.rows.items():
            with open(self.path(f'data/{split}.jsonl'), 'w', encoding='utf-8') as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + '\n')
        # `datasets` otherwise guesses splits from path keywords, and image folders or file names
        # containing "test" / "train" would win over the jsonl; the card names the files explicitly.
        configs = [{'config_name': 'default',
                    'data_files': [{'split': s, 'path': f'data/{s}.jsonl'} for s in self.rows]}]
        # `datasets` caches a local folder under its name and this card, not the files' contents: without
        # the rows' hash here, a rebuilt folder (or another one of the same name) loads the old rows.
        digest = hashlib.sha256(b''.join(self.path(f'data/{s}.jsonl').read_bytes() for s in self.rows)).hexdigest()
        info = {'config_name': 'default', 'description': f'rows sha256 {digest}'}
        card = (f'---\n{yaml.safe_dump({"configs": configs, "dataset_info": info}, sort_keys=False)}---\n'
                f'# {entry.title}\n\n'
                f'Prepared by `medres prepare {entry.name}`, loaded as `{entry.registered_name}`. Provenance, '
                f'split rule, label distribution, channel mapping, skipped items and checksums: {MANIFEST}.\n')
        self.path(CARD).write_text(card, encoding='utf-8')


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def parallel_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[Iterator[R]]:
    """An iterator of `fn(item)` for every item, in the items' order, computed on up to `workers`
    processes (1: in this process). `fn` must be picklable (a module-level function or a
    `functools.partial` of one) and should return failures as values. Leaving the block (also by
    an error) cancels what has not started and waits for what has, so no worker writes into a
    folder that is being removed."""
    items = list(items)
    workers = max(1, min(workers, len(items)))
    if workers == 1:
        yield map(fn, items)
        return
    # Spawned, not forked: a forked worker would inherit the build folder's lock (see `atomic_folder`)
    # and, orphaned by a killed run, keep that folder looking busy; a spawned one holds no such fd
    # and exits when its parent's end of the queue closes.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context('spawn'))
    try:
        yield pool.map(fn, items, chunksize=max(1, min(16, len(items) // (workers * 4))))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def safe_name(text: str) -> str:
    """A file-name-safe form of an id (ids stay unchanged in the rows). An id that needed changes
    gets a short hash of itself, so two ids never share a file ('a b' and 'a_b')."""
    clean = ''.join(c if c.isalnum() or c in '._-' else '_' for c in text).strip('._')
    return clean if clean == text else f'{clean or "item"}-{hashlib.sha1(text.encode()).hexdigest()[:8]}'


def file_hash(path: Path, algorithm: str = 'sha256') -> str:
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def file_manifest(root: Path) -> dict[str, dict]:
    """Every file under `root` with its hash and size: what `is_up_to_date` checks a folder against."""
    return {p.relative_to(root).as_posix(): {'sha256': file_hash(p), 'bytes': p.stat().st_size}
            for p in sorted(root.rglob('*')) if p.is_file() and p.name != LOCK}


def file_index(root: Path) -> set[str]:
    """Every file under `root` as a posix path relative to it: one walk instead of a stat per lookup."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith('.')]
        rel = Path(dirpath).relative_to(root)
        found.update((rel / f).as_posix() for f in filenames)
    return found


def find_one(root: Path, name: str, required: bool = True) -> Optional[Path]:
    """The single file called `name` anywhere under `root`."""
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    if len(hits) > 1:
        raise PrepareError(f'{root}: {len(hits)} files named {name} ({", ".join(map(str, hits[:3]))}); '
                           f'point --raw at the folder holding the one to use')
    if not hits and required:
        raise PrepareError(f'{root}: no file named {name} (is --raw the extracted download?)')
    return hits[0] if hits else None


def fingerprint(converter: Converter, ctx: Context, inputs: Iterable[Path]) -> str:
    e = ctx.entry
    facts = {'converter': converter.name, 'version': converter.version, 'seed': ctx.seed,
             'on_error': ctx.on_error, 'options': ctx.options, 'labels': e.labels,
             'channels': [c.model_dump() for c in e.channels or []], 'splits': sorted(e.splits),
             'synonyms': e.synonyms, 'codes': e.codes}
    h = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode())
    for p in sorted(set(inputs)):
        try:
            st = p.stat()
            h.update(f'{p}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode())
        except FileNotFoundError:
            h.update(f'{p}\0absent\n'.encode())
    return h.hexdigest()


def read_manifest(out: Path) -> Optional[dict]:
    try:
        return json.loads((out / MANIFEST).read_text(encoding='utf-8'))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_up_to_date(out: Path, fp: str) -> bool:
    """Same fingerprint, and every file the manifest lists is there with its size."""
    manifest = read_manifest(out)
    if not manifest or manifest.get('fingerprint') != fp:
        return False
    for rel, meta in manifest.get('files', {}).items():
        p = out / rel
        if not p.is_file() or p.stat().st_size != meta['bytes']:
            return False
    return True


def _owner_alive(folder: Path, kind: str) -> bool:
    """Whether the run that made a `.partial-*` / `.old-*` folder still runs. A building run holds an
    exclusive lock on a file inside its folder, which the kernel drops when the process ends however
    it ends (killed, reaped or not, another host's pid). Folders without that lock fall back to the
    pid in their name, counting our own pid as dead (it cannot be building twice)."""
    lock = folder / LOCK
    if lock.is_file():
        try:
            with open(lock, 'a') as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            pass
    try:
        pid = int(folder.name.split(f'.{kind}-')[1].split('-')[0])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        with open(f'/proc/{pid}/stat') as f:   # a zombie (killed, not yet reaped) is not building
            if f.read().rsplit(')', 1)[-1].split()[0] == 'Z':
                return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(out: Path) -> list[Path]:
    """Remove what killed runs left beside `out`: `.<name>.partial-*` (a half-built folder) and
    `.<name>.old-*` (the previous folder, when killed between the two renames). The registry never
    loads them; every run, also one that finds `out` up to date, removes them. Returns what went."""
    removed = []
    if not out.parent.is_dir():
        return removed
    for kind in ('partial', 'old'):
        for p in out.parent.glob(f'.{out.name}.{kind}-*'):
            if p.is_dir() and not _owner_alive(p, kind):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p)
    return removed


@contextmanager
def atomic_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; on success it replaces `out`, on any failure it is removed."""
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise PrepareError(f'{out} exists and is not a prepared dataset (no {MANIFEST}); refusing to replace it')
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = out.parent / f'.{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}'
    tmp.mkdir()
    lock = open(tmp / LOCK, 'w')
    fcntl.flock(lock, fcntl.LOCK_EX)   # held until this run ends: see `_owner_alive`
    try:
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / LOCK).unlink()
        old = out.parent / f'.{out.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}'
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        lock.close()


def answer_distribution(entry: Entry, rows: list[dict]) -> dict:
    """Per label for classification; per answer position for multiple choice (a bias check)."""
    answer, choices = entry.columns.answer, entry.columns.choices
    if choices:
        return dict(sorted(Counter(chr(ord('A') + r[choices].index(r[answer])) for r in rows).items()))
    return dict(sorted(Counter(r[answer] for r in rows).items()))


def _medres_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version('medres')
    except PackageNotFoundError:
        return 'unknown'


def build_manifest(converter: Converter, ctx: Context, plan: Plan, writer: DatasetWriter,
                   extra: dict, fp: str) -> dict:
    entry, rows = ctx.entry, writer.rows
    manifest = {
        'dataset': entry.name,
        'registered_as': entry.registered_name,
        'title': entry.title,
        'converter': {'module': type(converter).__module__, 'version': converter.version},
        'medres_version': _medres_version(),
        'created_utc': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'raw': str(ctx.raw.resolve()),
        'options': {'seed': ctx.seed, 'on_error': ctx.on_error, **ctx.options},
        'split_seed': ctx.seed,
        'counts': {split: len(r) for split, r in rows.items()},
        'label_distribution': {split: answer_distribution(entry, r) for split, r in rows.items()},
    }
    if entry.labels is not None:
        found = {r[entry.columns.answer] for split_rows in rows.values() for r in split_rows}
        manifest['labels'] = entry.labels
        manifest['labels_found'] = [label for label in entry.labels if label in found]
        manifest['labels_unseen'] = [label for label in entry.labels if label not in found]
    if entry.channels:
        manifest['channel_mapping'] = [c.model_dump() for c in entry.channels]
    manifest.update(plan.facts)
    manifest.update(extra)
    manifest['skipped'] = {'count': len(ctx.report.skipped), 'items': ctx.report.skipped}
    manifest['excluded'] = ctx.report.excluded_summary()
    manifest['files'] = file_manifest(writer.root)
    manifest['fingerprint'] = fp
    return manifest


def default_out(name: str, settings: Settings) -> Path:
    return settings.data_home / 'prepared' / name


def run(converter: Converter, entry: Entry, raw: Path, out: Optional[Path], *, seed: int = 42,
        on_error: str = 'error', options: Optional[dict] = None, force: bool = False,
        settings: Settings = Settings(), workers: int = 1) -> dict:
    """Plan, skip if up to date, else build atomically (images on `workers` processes; the output does
    not depend on their number); returns the manifest."""
    raw = Path(raw)
    if not raw.is_dir():
        raise PrepareError(f'--raw {raw}: not a folder')
    out = Path(out) if out is not None else default_out(entry.name, settings)
    if out.resolve().is_relative_to(raw.resolve()):
        raise PrepareError(f'--out {out} is inside --raw {raw}; the next run would read its own output')
    for p in remove_stale(out):
        console.print(f'medres prepare {entry.name}: removed {p}, left by a run that was killed', highlight=False,
                      markup=False)
    ctx = Context(entry, raw, out, seed, on_error, dict(options or {}), Report(entry.name, on_error), settings,
                  workers=max(1, int(workers)))
    plan = converter.plan(ctx)
    fp = fingerprint(converter, ctx, plan.inputs)
    if not force and is_up_to_date(out, fp):
        console.print(f'medres prepare {entry.name}: {out} is up to date with {raw} (same inputs and options); '
                      f'nothing to do (--force rebuilds it)', highlight=False, markup=False)
        manifest = read_manifest(out)
        manifest['up_to_date'] = True
        return manifest
    with atomic_folder(out) as tmp:
        writer = DatasetWriter(tmp)
        extra = converter.build(ctx, plan, writer)
        if not writer.rows:
            raise PrepareError(f'{entry.name}: no rows left to write from {raw}')
        writer.write_rows(entry)
        manifest = build_manifest(converter, ctx, plan, writer, extra, fp)
        # Written last: a folder with a manifest is a complete one.
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding='utf-8')
    print_summary(entry, out, manifest, default_out(entry.name, settings))
    return manifest


def print_summary(entry: Entry, out: Path, manifest: dict, default: Path) -> None:
    counts = ', '.join(f'{s} {n:,}' for s, n in manifest['counts'].items())
    say = lambda text: console.print(text, highlight=False, markup=False)   # noqa: E731  (paths, ids: no markup)
    say(f'medres prepare {entry.name}: wrote {sum(manifest["counts"].values()):,} rows ({counts}) and their '
        f'images to {out}')
    missing = [s for s in entry.splits if s not in manifest['counts']]
    if missing:
        say(f'  no rows for split(s) {", ".join(missing)}')
    skipped = manifest['skipped']
    if skipped['count']:
        say(f'  skipped {skipped["count"]} bad item(s), all listed in {out / MANIFEST}:')
        for s in skipped['items'][:5]:
            say(f'    {s["item"]}: {s["reason"]}')
    for rule, ex in manifest['excluded'].items():
        say(f'  excluded by rule {rule!r}: {ex["count"]:,} (listed in {MANIFEST})')
    if out.resolve() != default.resolve():
        hint = (f'{Env.LOCAL_SOURCES}={out.parent}' if out.name == entry.name
                else f'--out {default} (or a folder named {entry.name} + {Env.LOCAL_SOURCES})')
        say(f'  {entry.registered_name} loads it with {hint}')
    else:
        say(f'  {entry.registered_name} loads it now (e.g. --dataset {entry.registered_name})')
