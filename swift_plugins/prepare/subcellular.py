"""Subcellular: Human Protein Atlas immunofluorescence (Thul et al. 2017), the paper's caption task.

Three layouts, detected from the table at the top of --raw (or named with --table):

- `captions`: the paper's captions.json, a JSON array of {image_id, ensembl_id, protein, uniprot_id,
  cell_line, cellosaurus_id, localizations (';'-joined), url, caption, file_path, md5_hash}, or a
  table with those columns (csv, tsv, parquet, jsonl; a list of localizations stays a list).
  `file_path` (relative to --raw) names one image file (HPA's RGB composite, or a 4-plane stack in
  red, green, blue, yellow order) or the prefix of the stain files.
- `hpa_2021`: HPA's public image list of the 2021 single-cell challenge, kaggle_2021.tsv (comma-
  separated in practice: Image = URL prefix, Label = localization names or codes, Cellline,
  in_trainset), and the stain files downloaded from it anywhere under --raw, named by the URL path
  (`10005/921_B9_1_blue.jpg`), by its last two parts (`10005_921_B9_1_blue.jpg`, as HPA's download
  notebook saves them) or by the last one; or the `<prefix>_blue_red_green.jpg` composite. A row none
  of whose files are there was not downloaded: it is set aside and counted, not an error.
- `kaggle_2018`: the Kaggle 2018 challenge, train.csv (Id, Target = space-separated codes) and
  `<Id>_{red,green,blue,yellow}.png`. It names no cell lines: rows carry localizations only.

Stain files may be `.png`, `.tif`, `.jpg` or gzipped `.tif.gz` (read through); for a stain present in
several, lossless wins (tif, tif.gz, png, jpg). Localization codes map to names through the entry's
`codes` tables (hpa_2021, hpa_2018). Cell lines are normalised to the entry's spelling through its
labels and synonyms (case ignored); a line the entry does not know is kept as given and reported.
The public lists have no captions: each row gets `CAPTION_TEMPLATE` (recorded in the manifest).

Split, every layout, the paper's rule: Python `random.seed(seed); random.shuffle(rows in file order)`,
the first 2,000 test, the rest train (under 10,000 rows: 20% test, unless --test-size). captions.json
is shuffled whole, exactly as the paper's script did (a public list once its undownloaded rows are set
aside); test is then the first 2,000 rows *in that order* whose images are usable, so a bad entry never
leaves test short, and with no bad entry the split is exactly the paper's.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
from tqdm import tqdm

from ..data.channels import composite, decode_rgb, is_plain_rgb, stain_plane, to_uint8
from ..data.registry import Entry
from ..errors import ImageDecodeError, PrepareError
from ..vocabulary import PAPER_SUBCELLULAR_TEST_ROWS
from .common import (
    Context,
    Converter,
    DatasetWriter,
    Plan,
    console,
    file_hash,
    file_index,
    parallel_map,
    safe_name,
)

TABLE_SUFFIXES = ('.json', '.jsonl', '.csv', '.tsv', '.parquet')
# Preference among files of one stain: lossless first.
STAIN_SUFFIXES = ('.tif', '.tiff', '.tif.gz', '.tiff.gz', '.png', '.jpg', '.jpeg')
COMPOSITE_SUFFIX = '_blue_red_green.jpg'   # HPA's published RGB composite
PAPER_TEST_ROWS = PAPER_SUBCELLULAR_TEST_ROWS
SMALL_TABLE = 5 * PAPER_TEST_ROWS
CAPTION_TEMPLATE = ('Immunofluorescence microscopy image of {cell_line} cells. '
                    'Subcellular localizations of the stained protein: {localizations}.')
NO_CELL_LINE = 'human'   # the Kaggle 2018 layout names no cell line


@dataclass(frozen=True)
class Layout:
    name: str
    key: str                  # the column that identifies the layout
    required: tuple[str, ...]
    codes: Optional[str]      # the entry's code table for numeric localizations


LAYOUTS = (
    Layout('captions', 'file_path', ('image_id', 'cell_line', 'file_path'), None),
    Layout('hpa_2021', 'Image', ('Image', 'Label', 'Cellline'), 'hpa_2021'),
    Layout('kaggle_2018', 'Target', ('Id', 'Target'), 'hpa_2018'),
)
CAPTION_FIELDS = ('protein', 'ensembl_id', 'uniprot_id', 'cellosaurus_id', 'url')
GENE_TABLE_COLUMNS = {'Gene', 'Reliability'}   # subcellular_location.tsv: one row per gene, no images


@dataclass
class Record:
    number: int                    # 1-based entry / data row number in the table
    where: str
    id: str
    cell_line: str                 # as given
    localizations: list[str]
    caption: Optional[str]         # None: the layout has none (CAPTION_TEMPLATE)
    file: Optional[str] = None     # captions: file_path
    prefixes: list[str] = field(default_factory=list)
    md5: str = ''
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------ tables

def _sep(path: Path) -> str:
    # kaggle_2021.tsv is comma-separated in practice: the header decides, not the suffix.
    with open(path, encoding='utf-8-sig') as f:
        header = f.readline()
    return '\t' if '\t' in header else ','


def _columns(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix in ('.csv', '.tsv'):
            with open(path, encoding='utf-8-sig') as f:
                header = f.readline().rstrip('\r\n')
            import csv
            return next(csv.reader([header], delimiter=_sep(path)), [])
        if suffix == '.parquet':
            import pyarrow.parquet as pq
            return list(pq.read_schema(path).names)
        if suffix == '.jsonl':
            with open(path, encoding='utf-8') as f:
                first = next((line for line in f if line.strip()), '{}')
            row = json.loads(first)
            return list(row) if isinstance(row, dict) else []
        data = json.loads(path.read_text(encoding='utf-8'))
        return sorted({k for e in data if isinstance(e, dict) for k in e}) if isinstance(data, list) else []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise PrepareError(f'{path}: cannot read: {type(e).__name__}: {e}') from None


def read_table(path: Path) -> list[dict]:
    """Every entry / row of a table as a dict, values as stored (lists stay lists)."""
    suffix = path.suffix.lower()
    try:
        if suffix == '.json':
            data = json.loads(path.read_text(encoding='utf-8'))
            if not isinstance(data, list):
                raise PrepareError(f'{path}: expected a JSON array of entries, got {type(data).__name__}')
            return data
        if suffix == '.jsonl':
            with open(path, encoding='utf-8') as f:
                return [json.loads(line) for line in f if line.strip()]
        import pandas as pd  # imported here: `medres` builds every subcommand's parser on each call
        if suffix == '.parquet':
            rows = pd.read_parquet(path).to_dict('records')
            return [{k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in r.items()} for r in rows]
        return pd.read_csv(path, sep=_sep(path), dtype=str, keep_default_na=False,
                           encoding='utf-8-sig').to_dict('records')
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as e:
        raise PrepareError(f'{path}: cannot read: {type(e).__name__}: {e}') from None


def find_table(raw: Path, given: Optional[str]) -> tuple[Path, Layout]:
    """The table to read and its layout: `given`, else the one top-level table in a known layout."""
    if given:
        p = Path(given)
        p = p if p.is_absolute() else raw / p
        if not p.is_file():
            raise PrepareError(f'--table {given}: no such file')
        candidates = [p]
    else:
        candidates = sorted(p for p in raw.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    found, seen = [], {}
    for p in candidates:
        cols = _columns(p)
        seen[p.name] = cols
        layout = next((lay for lay in LAYOUTS if lay.key in cols), None)
        if layout is not None:
            missing = [c for c in layout.required if c not in cols]
            if missing:
                raise PrepareError(f'{p}: missing column(s) {missing} of the {layout.name} layout; columns are {cols}')
            found.append((p, layout))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise PrepareError(f'{raw}: {len(found)} tables in known layouts ({", ".join(p.name for p, _ in found)}); '
                           f'name one with --table')
    hint = ''
    genes = [name for name, cols in seen.items() if GENE_TABLE_COLUMNS <= set(cols)]
    if genes:
        hint = (f'; {genes[0]} is HPA\'s per-gene subcellular_location table, which has no image ids, cell lines '
                f'or files: use the image list (kaggle_2021.tsv) or the paper\'s captions.json')
    raise PrepareError(f'{raw}: no table in a known layout (captions.json / a captions table with image_id, '
                       f'cell_line, file_path; kaggle_2021.tsv with Image, Label, Cellline; Kaggle 2018 train.csv '
                       f'with Id, Target); tables found: {sorted(seen) or "none"}{hint}')


# ------------------------------------------------------------------------------------ rows

def _text(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ''
    return str(value).strip()


def _unique(values) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _localizations(value, codes: Optional[list[str]], sep: str) -> list[str]:
    """A list stays a list; text is split on `sep`; numeric codes become names through `codes`."""
    if isinstance(value, (list, tuple)):
        tokens = [_text(v) for v in value]
    else:
        text = _text(value)
        for s in sep[1:]:
            text = text.replace(s, sep[0])
        tokens = [t.strip() for t in text.split(sep[0])] if sep[0] != ' ' else text.split()
    names = []
    for t in tokens:
        if t.isdigit() and codes is not None:
            if int(t) >= len(codes):
                raise ValueError(f'localization code {t} is outside the code table ({len(codes)} codes)')
            names.append(codes[int(t)])
        else:
            names.append(t)
    return _unique(names)


def _records(table: Path, layout: Layout, entries: list[dict], entry: Entry, report) -> list[Record]:
    """Table entries -> records; an unreadable entry is reported bad (error or skip)."""
    codes = entry.codes.get(layout.codes) if layout.codes else None
    if layout.codes and codes is None:
        raise PrepareError(f'{entry.path}: the {layout.name} layout needs the code table codes.{layout.codes}')
    kind = 'entry' if table.suffix.lower() == '.json' else 'row'
    out = []
    for i, e in enumerate(entries, start=1):
        if not isinstance(e, dict):
            report.bad(f'{table.name} {kind} {i}', f'expected an object, got {type(e).__name__}')
            continue
        try:
            if layout.name == 'captions':
                image_id = _text(e.get('image_id'))
                where = f'{table.name} {kind} {i} (image_id {image_id!r})'
                rec = Record(i, where, image_id, _text(e.get('cell_line')),
                             _localizations(e.get('localizations'), None, ';'),
                             _text(e.get('caption')) if 'caption' in e else None, file=_text(e.get('file_path')),
                             md5=_text(e.get('md5_hash')).lower(),
                             extra={k: _text(e.get(k)) for k in CAPTION_FIELDS})
            elif layout.name == 'hpa_2021':
                url = _text(e.get('Image')).rstrip('/')
                parts = PurePosixPath(url.split('://', 1)[-1]).parts[1:] if '://' in url else PurePosixPath(url).parts
                where = f'{table.name} {kind} {i} (Image {url!r})'
                label = e.get('Label') if _text(e.get('Label')) else e.get('Label_idx')
                prefixes = _unique(['/'.join(parts[-2:]), '_'.join(parts[-2:]), parts[-1] if parts else ''])
                rec = Record(i, where, '_'.join(parts[-2:]), _text(e.get('Cellline')),
                             _localizations(label, codes, ',|'), None, prefixes=prefixes,
                             extra={'url': url})
            else:
                image_id = _text(e.get('Id'))
                where = f'{table.name} {kind} {i} (Id {image_id!r})'
                rec = Record(i, where, image_id, '', _localizations(e.get('Target'), codes, ' ,|'), None,
                             prefixes=[image_id] if image_id else [])
        except ValueError as err:
            report.bad(f'{table.name} {kind} {i}', str(err))
            continue
        out.append(rec)
    return out


def split_test_size(n: int, given: Optional[int]) -> int:
    size = given if given is not None else (PAPER_TEST_ROWS if n >= SMALL_TABLE else max(1, round(0.2 * n)))
    if not 0 < size < n:
        raise PrepareError(f'--test-size {size}: needs 0 < test size < {n} rows')
    return size


def paper_order(n: int, seed: int) -> list[int]:
    """Each of `n` rows' (file order) position after Python's random.seed(seed); random.shuffle."""
    order = list(range(n))
    random.Random(seed).shuffle(order)   # the same stream as random.seed(seed); random.shuffle(order)
    rank = [0] * n
    for position, i in enumerate(order):
        rank[i] = position
    return rank


def paper_split(n: int, test_size: int, seed: int) -> list[str]:
    """The split of each of `n` rows (file order): the first `test_size` of the shuffle are test."""
    return ['test' if r < test_size else 'train' for r in paper_order(n, seed)]


# ------------------------------------------------------------------------------------ files

class StainFiles:
    """Finds a row's image files in one walk of --raw."""

    def __init__(self, raw: Path):
        self.files = file_index(raw)
        self.by_name = defaultdict(list)
        for rel in self.files:
            self.by_name[PurePosixPath(rel).name].append(rel)

    def named(self, rel_name: str, anywhere: bool) -> list[str]:
        """Files called `rel_name`: exactly there (relative to --raw), or (anywhere) at any depth."""
        if not anywhere:
            return [rel_name] if rel_name in self.files else []
        base = PurePosixPath(rel_name).name
        return sorted(r for r in self.by_name.get(base, []) if r == rel_name or r.endswith('/' + rel_name))

    def stains(self, prefix: str, sources: list[str], anywhere: bool) -> tuple[dict[str, list[str]], list[str]]:
        """Per stain source, the files of its preferred suffix; and the sources with no file."""
        hits, missing = {}, []
        for source in sources:
            found = next((h for s in STAIN_SUFFIXES if (h := self.named(f'{prefix}_{source}{s}', anywhere))), [])
            if found:
                hits[source] = found
            else:
                missing.append(source)
        return hits, missing


def _resolve(rec: Record, layout: Layout, files: StainFiles, sources: list[str]):
    """('file', rel) | ('stains', {source: rel}) | ('absent', None); raises ImageDecodeError for a
    partial or ambiguous set of files."""
    if layout.name == 'captions':
        rel = rec.file.lstrip('/')
        if not rel:
            raise ImageDecodeError('empty file_path')
        if rel in files.files:
            return 'file', rel
        hits, missing = files.stains(rel, sources, anywhere=False)
        if missing:
            raise ImageDecodeError(f'image file not found: {rel} (nor its stain files '
                                   f'{", ".join(f"{rel}_{s}.*" for s in missing)})')
        return 'stains', {s: h[0] for s, h in hits.items()}
    for prefix in rec.prefixes:
        hits, missing = files.stains(prefix, sources, anywhere=True)
        if not hits:
            composite_file = files.named(prefix + COMPOSITE_SUFFIX, anywhere=True)
            if len(composite_file) == 1:
                return 'file', composite_file[0]
            if len(composite_file) > 1:
                raise ImageDecodeError(f'{len(composite_file)} files named {prefix}{COMPOSITE_SUFFIX}: '
                                       f'{", ".join(composite_file[:3])}')
            continue
        if missing:
            raise ImageDecodeError(f'stain file(s) not found: {", ".join(f"{prefix}_{s}.*" for s in missing)} '
                                   f'(found {", ".join(h[0] for h in hits.values())})')
        clash = {s: h for s, h in hits.items() if len(h) > 1}
        if clash:
            s, h = next(iter(clash.items()))
            raise ImageDecodeError(f'duplicate id: {len(h)} files for stain {s}: {", ".join(h[:3])}')
        return 'stains', {s: h[0] for s, h in hits.items()}
    return 'absent', None


# ------------------------------------------------------------------------------------ converter

class SubcellularConverter(Converter):
    name = 'subcellular'
    version = 2
    help = ('Human Protein Atlas immunofluorescence (the paper\'s captions.json, HPA\'s kaggle_2021.tsv image list, '
            'or the Kaggle 2018 layout), the paper\'s caption task')
    raw_help = 'folder with captions.json, kaggle_2021.tsv or train.csv at the top and the images (any depth)'

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--table', help='the table to read (default: the one top-level table in a known layout)')
        parser.add_argument('--test-size', type=int, default=None,
                            help=f'test rows (default: {PAPER_TEST_ROWS} as the paper, 20%% of a table '
                                 f'under {SMALL_TABLE:,} rows)')

    def plan(self, ctx: Context) -> Plan:
        entry, report = ctx.entry, ctx.report
        if not entry.channels:
            raise PrepareError(f'{entry.path}: the subcellular entry needs `channels` (the stain-to-RGB mapping)')
        table, layout = find_table(ctx.raw, ctx.options.get('table'))
        entries = read_table(table)
        if not entries:
            raise PrepareError(f'{table}: no entries')
        records = _records(table, layout, entries, entry, report)
        files = StainFiles(ctx.raw)
        sources = [c.source for c in entry.channels if c.color != 'none']

        ids = Counter(r.id for r in records)
        numbered = 'entries' if table.suffix.lower() == '.json' else 'rows'
        resolved = []
        for rec in records:
            if not rec.id:
                report.bad(rec.where, 'empty image id')
                continue
            if ids[rec.id] > 1:
                rows = [str(r.number) for r in records if r.id == rec.id]
                report.bad(rec.where, f'duplicate id: {rec.id!r} is on {numbered} {", ".join(rows)}')
                continue
            try:
                kind, source = _resolve(rec, layout, files, sources)
            except ImageDecodeError as e:
                resolved.append((rec, 'bad', str(e)))
                continue
            if kind == 'absent':
                report.exclude('not_downloaded', rec.id)
                continue
            resolved.append((rec, kind, source))

        # The split: captions.json shuffled whole (the paper's file order and length); a public list
        # after its undownloaded rows are set aside.
        if layout.name == 'captions':
            n = len(entries)
            test_size = split_test_size(n, ctx.options.get('test_size'))
            rank_of = paper_order(n, ctx.seed)
            rank = {rec.number: rank_of[rec.number - 1] for rec, _, _ in resolved}
            scope = f'all {n:,} entries of {table.name} in file order'
        else:
            n = len(resolved)
            if n == 0:
                raise PrepareError(f'{ctx.raw}: none of the {len(records):,} images of {table.name} was found under '
                                   f'it (expected stain files such as <id>_blue.jpg / .png / .tif.gz)')
            test_size = split_test_size(n, ctx.options.get('test_size'))
            rank_of = paper_order(n, ctx.seed)
            rank = {rec.number: rank_of[k] for k, (rec, _, _) in enumerate(resolved)}
            scope = f'the {n:,} downloaded rows of {table.name} in file order'

        items, inputs = [], [table]
        normalised, unknown, spellings = Counter(), Counter(), entry.spellings()
        for rec, kind, source in resolved:
            if kind == 'bad':
                report.bad(rec.where, source)
                continue
            line = rec.cell_line
            if line:
                canonical = spellings.get(line.casefold())
                if canonical is None:
                    unknown[line] += 1
                else:
                    if canonical != line:
                        normalised[f'{line} -> {canonical}'] += 1
                    line = canonical
            elif layout.name != 'kaggle_2018':
                report.exclude('no_cell_line', rec.where)
                continue
            if rec.caption is not None and not rec.caption:
                report.bad(rec.where, 'empty caption')
                continue
            paths = ctx.raw / source if kind == 'file' else {s: ctx.raw / r for s, r in source.items()}
            inputs += [paths] if kind == 'file' else list(paths.values())
            # `build` splits: the first `test_size` usable rows in shuffled order are test.
            items.append({'rec': rec, 'cell_line': line, 'kind': kind, 'source': paths, 'rank': rank[rec.number]})
        if unknown:
            console.print(f'subcellular: {sum(unknown.values()):,} row(s) with cell line(s) the entry does not know, '
                          f'kept as spelled (listed in the manifest under cell_lines_unknown): '
                          f'{", ".join(sorted(unknown)[:8])}', highlight=False, markup=False)
        if layout.name == 'kaggle_2018':
            console.print(f'subcellular: {table.name} (Kaggle 2018) names no cell lines: rows carry localizations only, '
                          f'so only the localization recall of medres/subcellular can be scored',
                          highlight=False, markup=False)
        has_captions = layout.name == 'captions' and any(r.caption is not None for r in records)
        facts = {
            'layout': layout.name,
            'table': table.name,
            'test_size': test_size,
            'split_rule': f'Python random.seed({ctx.seed}); random.shuffle() of {scope}; the first {test_size:,} '
                          f'(in that order, among the rows whose images are usable) test, the rest train',
            'caption_source': f'the {table.name} caption field' if has_captions else f'template: {CAPTION_TEMPLATE}',
            'localization_codes': f'codes.{layout.codes} of {entry.path}' if layout.codes else None,
            'cell_lines_normalised': dict(sorted(normalised.items())),
            'cell_lines_unknown': dict(sorted(unknown.items())),
            'composite': 'stains composed by channel_mapping (color none = left out); 8-bit stains as stored, '
                         'deeper stains windowed per image at the 0.1/99.9 percentiles; a single RGB file is taken '
                         'as the distributed composite',
        }
        return Plan(items, inputs, facts)

    def _image(self, ctx: Context, item: dict):
        rec = item['rec']
        if item['kind'] == 'stains':
            by_source = {c.source: c.name for c in ctx.entry.channels}
            planes, windows = {}, {}
            for source, path in item['source'].items():
                name = by_source[source]
                plane, _ = stain_plane(path, f'{rec.where} {path.name}', ctx.max_pixels)
                planes[name], windows[name] = to_uint8(plane)
            return composite(planes, ctx.entry.channels), {k: v for k, v in windows.items() if v}, None
        path = item['source']
        if rec.md5:
            actual = file_hash(path, 'md5')
            if actual != rec.md5:
                raise ImageDecodeError(f'md5 of {path.name} is {actual}, the table says {rec.md5}')
        rgb, info = decode_rgb(path, rec.where, ctx.entry.channels, max_pixels=ctx.max_pixels)
        if info['source'] == 'gray':
            raise ImageDecodeError(f'{path.name} is a single stain, not a composite or a 4-stain file; point '
                                   f'file_path at the stain files\' common prefix')
        windows = {k: v for k, v in (info.get('windows') or {}).items() if v}
        if info.get('window'):
            windows['rgb'] = info['window']
        return rgb, windows, path if is_plain_rgb(path) else None

    def build(self, ctx: Context, plan: Plan, writer: DatasetWriter) -> dict:
        windows, md5_checked, kinds, done = {}, 0, Counter(), []
        work = partial(_write_image, self, ctx, writer.files())
        with parallel_map(work, plan.items, ctx.workers) as results:
            for item, (image, win, kind, error) in zip(plan.items, tqdm(results, total=len(plan.items), unit='img',
                                                                        desc='subcellular images', disable=None)):
                rec = item['rec']
                if error is not None:
                    ctx.report.bad(rec.where, error.removeprefix(rec.where).lstrip(': '))
                    continue
                md5_checked += bool(item['kind'] == 'file' and rec.md5)
                kinds[kind] += 1
                if win:
                    windows[rec.id] = win
                done.append((item, image))
        test_size = plan.facts['test_size']
        if not 0 < test_size < len(done):
            raise PrepareError(f'--test-size {test_size}: only {len(done)} rows have usable images; needs '
                               f'0 < test size < {len(done)}')
        done.sort(key=lambda d: d[0]['rank'])
        for k, (item, image) in enumerate(done):   # shuffled order: test is drawn over what is usable
            rec, split = item['rec'], 'test' if k < test_size else 'train'
            caption = rec.caption if rec.caption is not None else CAPTION_TEMPLATE.format(
                cell_line=item['cell_line'] or NO_CELL_LINE, localizations=', '.join(rec.localizations) or 'none annotated')
            writer.add_row(split, {
                'id': rec.id, 'image': writer.settle(image, split), 'caption': caption, 'cell_line': item['cell_line'],
                'localizations': rec.localizations, **{k: rec.extra.get(k, '') for k in CAPTION_FIELDS}})
        writer.clear_staging()
        # The caption is the answer; what a caption task is scored on is its targets: count those.
        rows = writer.rows
        lines = {split: dict(sorted(Counter(r['cell_line'] for r in rs).items())) for split, rs in rows.items()}
        found = {r['cell_line'] for rs in rows.values() for r in rs}
        return {'label_distribution': lines,
                'labels_found': [x for x in ctx.entry.labels or [] if x in found],
                'labels_unseen': [x for x in ctx.entry.labels or [] if x not in found],
                'localization_distribution': {split: dict(sorted(Counter(x for r in rs for x in r['localizations'])
                                                                 .items())) for split, rs in rows.items()},
                'images': dict(kinds),
                'windows': {'scope': 'per image and stain (raw values at the 0.1 and 99.9 percentiles)',
                            'images': windows},
                'md5_checked': md5_checked}


def _write_image(converter: SubcellularConverter, ctx: Context, files: DatasetWriter, item: dict) -> tuple:
    """One image composed or checked, and written (a worker's job): (image path, windows, kind, error)."""
    rec = item['rec']
    try:
        rgb, win, keep = converter._image(ctx, item)
    except ImageDecodeError as e:
        return None, None, None, str(e)
    kind = ('composed from stain files' if item['kind'] == 'stains' else
            'composite copied as downloaded' if keep else 'converted from one file')
    stem = files.staged(safe_name(rec.id))   # its split is drawn once every image is known
    image = files.copy(keep, stem + keep.suffix.lower()) if keep else files.save_png(stem + '.png', rgb)
    return image, win, kind, None
