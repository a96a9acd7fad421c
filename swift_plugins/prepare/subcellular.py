"""Subcellular: Human Protein Atlas immunofluorescence images (Thul et al. 2017), cell-line classification.

Input: the images plus a metadata table (csv, tsv, parquet or jsonl) with the columns image_id,
cell_line and file_path, and optionally ensembl_id, protein, uniprot_id, cellosaurus_id,
localizations (';'-separated), caption and md5_hash. `file_path` (relative to --raw) names
either one image file or the common prefix of four per-stain files `<file_path>_<stain>.<ext>`
(HPA's own naming: _blue, _red, _green, _yellow). One file is either HPA's RGB composite (used as
distributed) or a 4-plane stack (composed with the entry's plane indices). Stains become RGB by
the registry entry's `channels`; stains deeper than 8 bits get per-image percentile windows,
because each image is its own antibody staining with its own exposure.

Split, as the paper: the table shuffled with the seed (pandas `sample(frac=1, random_state=seed)`),
the first 2,000 rows test, the rest train. A table under 10,000 rows gets 20% test instead
(unless --test-size is given), so a small download is not mostly test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..data.channels import composite, decode_rgb, is_plain_rgb, stain_plane, to_uint8
from ..errors import ImageDecodeError, PrepareError
from ..vocabulary import PAPER_SUBCELLULAR_TEST_ROWS, Env
from .common import Context, Converter, DatasetWriter, Plan, file_hash, file_index, safe_name

REQUIRED = ('image_id', 'cell_line', 'file_path')
OPTIONAL = ('ensembl_id', 'protein', 'uniprot_id', 'cellosaurus_id', 'localizations', 'caption', 'md5_hash')
STAIN_SUFFIXES = ('.png', '.tif', '.tiff', '.jpg', '.jpeg')
TABLE_SUFFIXES = ('.csv', '.tsv', '.parquet', '.jsonl')
PAPER_TEST_ROWS = PAPER_SUBCELLULAR_TEST_ROWS


def read_table(path: Path):
    import pandas as pd  # imported here: `medres` builds every subcommand's parser on each call
    suffix = path.suffix.lower()
    if suffix == '.parquet':
        df = pd.read_parquet(path)
    elif suffix == '.jsonl':
        df = pd.read_json(path, lines=True, dtype=False)
    else:
        df = pd.read_csv(path, sep='\t' if suffix == '.tsv' else ',', dtype=str, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise PrepareError(f'{path}: missing column(s) {missing}; columns are {list(df.columns)}')
    for col in OPTIONAL:
        if col not in df.columns:
            df[col] = ''
    return df.fillna('').astype({c: str for c in REQUIRED + OPTIONAL})


def find_table(raw: Path, given) -> Path:
    if given:
        p = Path(given)
        p = p if p.is_absolute() else raw / p
        if not p.is_file():
            raise PrepareError(f'--table {given}: no such file')
        return p
    tables = sorted(p for p in raw.iterdir() if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES)
    if len(tables) != 1:
        raise PrepareError(f'{raw}: expected one metadata table ({"/".join(TABLE_SUFFIXES)}) at the top, found '
                           f'{[t.name for t in tables]}; name it with --table')
    return tables[0]


class SubcellularConverter(Converter):
    name = 'subcellular'
    help = 'Human Protein Atlas immunofluorescence (metadata table + images), cell-line classification'
    raw_help = 'folder with the HPA metadata table and the images its file_path column names'

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--table', help='metadata table (default: the one table file at the top of --raw)')
        parser.add_argument('--test-size', type=int, default=None,
                            help=f'test rows (default: {PAPER_TEST_ROWS} as the paper, 20%% of a table '
                                 f'under {5 * PAPER_TEST_ROWS:,} rows)')

    def _sources(self, ctx: Context, files: set[str], row) -> tuple[str, object]:
        """('file', path) or ('stains', {channel name: path}); raises ImageDecodeError if absent."""
        rel = row.file_path.strip().lstrip('/')
        if rel in files:
            return 'file', ctx.raw / rel
        stains, missing = {}, []
        for c in ctx.entry.channels:
            if c.color == 'none':
                continue
            hit = next((f'{rel}_{c.source}{s}' for s in STAIN_SUFFIXES if f'{rel}_{c.source}{s}' in files), None)
            if hit is None:
                missing.append(f'{rel}_{c.source}.*')
            stains[c.name] = ctx.raw / hit if hit else None
        if missing:
            raise ImageDecodeError(f'image file not found: {rel} (nor its stain files {", ".join(missing)})')
        return 'stains', stains

    def plan(self, ctx: Context) -> Plan:
        entry = ctx.entry
        if not entry.channels:
            raise PrepareError(f'{entry.path}: the subcellular entry needs `channels` (the stain-to-RGB mapping)')
        table = find_table(ctx.raw, ctx.options.get('table'))
        df = read_table(table)
        n = len(df)
        if n == 0:
            raise PrepareError(f'{table}: no rows')
        test_size = ctx.options.get('test_size')
        if test_size is None:
            test_size = PAPER_TEST_ROWS if n >= 5 * PAPER_TEST_ROWS else max(1, round(0.2 * n))
        if not 0 < test_size < n:
            raise PrepareError(f'--test-size {test_size}: needs 0 < test size < {n} rows')
        # 1-based data row numbers (header not counted), so messages point at the table row.
        df['row_number'] = range(1, n + 1)
        shuffled = df.sample(frac=1, random_state=ctx.seed)

        rows_of = df.groupby('image_id')['row_number'].apply(list).to_dict()
        files = file_index(ctx.raw)
        items, inputs = [], [table]
        for row in shuffled.itertuples(index=False):
            where = f'{table.name} row {row.row_number} (image_id {row.image_id!r})'
            if not row.image_id.strip():
                ctx.report.bad(where, 'empty image_id')
                continue
            if len(rows_of[row.image_id]) > 1:
                ctx.report.bad(where, f'duplicate id: image_id {row.image_id!r} is on rows '
                                      f'{", ".join(map(str, rows_of[row.image_id]))}')
                continue
            if row.cell_line.strip() not in entry.labels:
                ctx.report.bad(where, f'label {row.cell_line!r} is not in the label set of {entry.path} '
                                      f'(add it there, or override the entry with {Env.REGISTRY})')
                continue
            try:
                kind, source = self._sources(ctx, files, row)
            except ImageDecodeError as e:
                ctx.report.bad(where, str(e))
                continue
            inputs += [source] if kind == 'file' else list(source.values())
            # In shuffled order: `build` takes the first `test_size` of those that decode as test.
            items.append({'row': row, 'where': where, 'kind': kind, 'source': source})
        facts = {'test_size': test_size,
                 'split_rule': f'table shuffled with seed {ctx.seed} (pandas sample(frac=1)); first {test_size:,} '
                               f'rows test (counted among the rows whose images decode), the rest train',
                 'table': table.name,
                 'composite': 'stains composed by channel_mapping (color none = left out); 8-bit stains as '
                              'stored, deeper stains windowed per image at the 0.1/99.9 percentiles; a single '
                              'RGB file is taken as the distributed composite'}
        return Plan(items, inputs, facts)

    def _image(self, ctx: Context, item: dict):
        if item['kind'] == 'stains':
            planes, windows = {}, {}
            for name, path in item['source'].items():
                plane, _ = stain_plane(path, f'{item["where"]} {path.name}', ctx.max_pixels)
                planes[name], windows[name] = to_uint8(plane)
            return composite(planes, ctx.entry.channels), {k: v for k, v in windows.items() if v}, None
        path = item['source']
        md5 = item['row'].md5_hash.strip().lower()
        actual = file_hash(path, 'md5') if md5 else md5
        if actual != md5:
            raise ImageDecodeError(f'md5 of {path.name} is {actual}, the table says {md5}')
        rgb, info = decode_rgb(path, item['where'], ctx.entry.channels, max_pixels=ctx.max_pixels)
        if info['source'] == 'gray':
            raise ImageDecodeError(f'{path.name} is a single stain, not a composite or a 4-stain file; point '
                                   f'file_path at the stain files\' common prefix')
        windows = {k: v for k, v in (info.get('windows') or {}).items() if v}
        if info.get('window'):
            windows['rgb'] = info['window']
        return rgb, windows, path if is_plain_rgb(path) else None

    def build(self, ctx: Context, plan: Plan, writer: DatasetWriter) -> dict:
        windows, md5_checked, done = {}, 0, []
        for item in tqdm(plan.items, desc='subcellular images', unit='img', disable=None):
            row = item['row']
            try:
                rgb, win, keep = self._image(ctx, item)
            except ImageDecodeError as e:
                ctx.report.bad(item['where'], str(e).removeprefix(item['where']).lstrip(': '))
                continue
            md5_checked += bool(item['kind'] == 'file' and row.md5_hash.strip())
            stem = writer.staged(safe_name(row.image_id))
            image = writer.copy(keep, stem + keep.suffix.lower()) if keep else writer.save_png(stem + '.png', rgb)
            if win:
                windows[row.image_id] = win
            done.append((row, image))
        test_size = plan.facts['test_size']
        if not 0 < test_size < len(done):
            raise PrepareError(f'--test-size {test_size}: only {len(done)} rows have usable images; needs 0 < test '
                               f'size < {len(done)}')
        for k, (row, image) in enumerate(done):   # shuffled order: the split is drawn over what decoded
            split = 'test' if k < test_size else 'train'
            localizations = [x.strip() for x in row.localizations.split(';') if x.strip()]
            writer.add_row(split, {
                'id': row.image_id, 'image': writer.settle(image, split), 'answer': row.cell_line.strip(),
                'localizations': localizations, 'protein': row.protein, 'ensembl_id': row.ensembl_id,
                'uniprot_id': row.uniprot_id, 'cellosaurus_id': row.cellosaurus_id, 'caption': row.caption})
        writer.clear_staging()
        return {'windows': {'scope': 'per image and stain (raw values at the 0.1 and 99.9 percentiles)',
                            'images': windows},
                'md5_checked': md5_checked}
