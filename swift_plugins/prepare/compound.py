"""Compound: BBBC021v1 (Caie et al. 2010), MCF-7 cells, mechanism-of-action classification.

Input: the 55 per-plate folders of 16-bit TIFFs (three per field: DAPI, beta-tubulin, F-actin;
1280x1024) and BBBC021_v1_image.csv, BBBC021_v1_moa.csv (and BBBC021_v1_compound.csv, whose SMILES
are kept when present). Fields join to their MoA on compound + concentration; fields with no MoA
are excluded (counted). Labels are the 12 MoAs plus DMSO, checked against the registry entry.

The three channels become RGB by the entry's `channels`, each windowed at its 0.1/99.9 percentiles
over all prepared fields of the same plate. Per plate, not per image: a plate is one staining and
imaging batch, so plate windows remove batch differences while keeping the intensity differences
between treatments on the plate, which are part of the phenotype a per-image window would erase.

Split, never by field: by compound (default; within each MoA, a seeded share of the compounds is
test, so no compound is in both splits, and DMSO, one compound, is split by plate) or by plate.
"""
from __future__ import annotations

import argparse
import random
import re
from collections import Counter, defaultdict
from functools import partial
from pathlib import PurePosixPath

from tqdm import tqdm

from ..data.channels import WindowAccumulator, composite, stain_plane, to_uint8
from ..data.images import WINDOW_PERCENTILES
from ..errors import ImageDecodeError, PrepareError
from .common import Context, Converter, DatasetWriter, Plan, file_index, find_one, parallel_map, safe_name

IMAGE_CSV, MOA_CSV, COMPOUND_CSV = 'BBBC021_v1_image.csv', 'BBBC021_v1_moa.csv', 'BBBC021_v1_compound.csv'
CONTROL = 'DMSO'
SITE = re.compile(r'_s(\d+)_')
ZIP = re.compile(r'BBBC021_v1_images_(.+)\.zip')


def concentration_key(value) -> float:
    # The two CSVs spell the same concentration differently (e.g. 0.003 and 3e-03).
    return round(float(value), 9)


def pick_test(groups: list[str], fraction: float, rng: random.Random) -> list[str]:
    """A seeded share of `groups` (at least one, never all) for test; none from a single group."""
    groups = sorted(groups)
    if len(groups) < 2:
        return []
    rng.shuffle(groups)
    return sorted(groups[: min(len(groups) - 1, max(1, round(len(groups) * fraction)))])


class CompoundConverter(Converter):
    name = 'compound'
    help = 'BBBC021v1 MCF-7 compound profiling (16-bit TIFF triplets + CSVs), MoA classification'
    raw_help = 'folder with the three BBBC021 CSVs and the extracted per-plate image folders'

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--split-by', choices=('compound', 'plate'), default='compound',
                            help='hold out whole compounds (default; DMSO by plate) or whole plates')
        parser.add_argument('--test-fraction', type=float, default=0.25,
                            help='share of compounds per MoA (or of plates) held out for test (default 0.25)')

    def _read_csvs(self, ctx: Context):
        import pandas as pd  # imported here: `medres` builds every subcommand's parser on each call
        image_csv, moa_csv = find_one(ctx.raw, IMAGE_CSV), find_one(ctx.raw, MOA_CSV)
        compound_csv = find_one(ctx.raw, COMPOUND_CSV, required=False)
        images = pd.read_csv(image_csv, dtype=str, keep_default_na=False)
        moa = pd.read_csv(moa_csv, dtype=str, keep_default_na=False)
        sources = [c.source for c in ctx.entry.channels]
        need = {image_csv: ['Image_Metadata_Plate_DAPI', 'Image_Metadata_Well_DAPI', 'Image_Metadata_Compound',
                            'Image_Metadata_Concentration'] + [f'Image_{k}_{s}' for s in sources
                                                               for k in ('FileName', 'PathName')],
                moa_csv: ['compound', 'concentration', 'moa']}
        for path, cols in need.items():
            missing = [c for c in cols if c not in (images if path == image_csv else moa).columns]
            if missing:
                raise PrepareError(f'{path}: missing column(s) {missing}')
        smiles = {}
        if compound_csv is not None:
            compounds = pd.read_csv(compound_csv, dtype=str, keep_default_na=False)
            if {'compound', 'smiles'} <= set(compounds.columns):
                smiles = dict(zip(compounds['compound'], compounds['smiles']))
        return image_csv, moa_csv, compound_csv, images, moa, smiles

    def plan(self, ctx: Context) -> Plan:
        entry, report = ctx.entry, ctx.report
        if not entry.channels:
            raise PrepareError(f'{entry.path}: the compound entry needs `channels` (the stain-to-RGB mapping)')
        fraction = ctx.options['test_fraction']
        if not 0 < fraction < 1:
            raise PrepareError(f'--test-fraction {fraction}: needs 0 < fraction < 1')
        image_csv, moa_csv, compound_csv, images, moa_df, smiles = self._read_csvs(ctx)
        moa_of = {}
        for r in moa_df.itertuples(index=False):
            moa_of[(r.compound, concentration_key(r.concentration))] = r.moa
        files = file_index(ctx.raw)
        self._check_extracted(ctx, images, files)

        fields = []
        for i, r in enumerate(images.to_dict('records'), start=1):
            plate, well = r['Image_Metadata_Plate_DAPI'], r['Image_Metadata_Well_DAPI']
            where = f'{IMAGE_CSV} row {i} ({plate} {well})'
            try:
                conc = concentration_key(r['Image_Metadata_Concentration'])
            except ValueError:
                report.bad(where, f'concentration {r["Image_Metadata_Concentration"]!r} is not a number')
                continue
            label = moa_of.get((r['Image_Metadata_Compound'], conc))
            if label is None:
                report.exclude('no_moa', f'{where}: {r["Image_Metadata_Compound"]} at {conc}')
                continue
            if label not in entry.labels:
                report.bad(where, f'label {label!r} (from {MOA_CSV}) is not in the label set of {entry.path}')
                continue
            site = SITE.search(r[f'Image_FileName_{entry.channels[0].source}'])
            field_id = f'{plate}_{well}_s{site.group(1)}' if site else f'{plate}_{well}_{r.get("ImageNumber", i)}'
            paths, missing = {}, []
            for c in entry.channels:
                folder, name = r[f'Image_PathName_{c.source}'], r[f'Image_FileName_{c.source}']
                # The CSV's PathName is Week<N>/<plate>; the plate zips extract to <plate>/.
                candidates = [PurePosixPath(folder) / name, PurePosixPath(PurePosixPath(folder).name) / name]
                hit = next((p.as_posix() for p in candidates if p.as_posix() in files), None)
                paths[c.name] = ctx.raw / (hit or candidates[0])
                if hit is None:
                    missing.append(candidates[0].as_posix())
            fields.append({'id': field_id, 'where': where, 'plate': plate, 'well': well, 'label': label,
                           'compound': r['Image_Metadata_Compound'], 'concentration': conc,
                           'replicate': r.get('Replicate', ''), 'paths': paths, 'missing': missing})

        ids = Counter(f['id'] for f in fields)
        items = []
        for f in fields:
            if ids[f['id']] > 1:
                report.bad(f['where'], f'duplicate id: field {f["id"]} is on {ids[f["id"]]} rows of {IMAGE_CSV}')
            elif f['missing']:
                report.bad(f['where'], f'image file not found: {", ".join(f["missing"])}')
            else:
                items.append(f)
        if not items:
            raise PrepareError(f'{ctx.raw}: no field has both a mechanism of action and its image files')
        facts = self._split(ctx, items, fraction)
        inputs = [image_csv, moa_csv] + ([compound_csv] if compound_csv else [])
        inputs += [p for f in fields for p in f['paths'].values()]
        for f in items:
            f['smiles'] = smiles.get(f['compound'], '')
        return Plan(items, inputs, facts)

    @staticmethod
    def _check_extracted(ctx: Context, images, files: set[str]) -> None:
        """A plate whose zip is there but not unpacked is a download step left out, not a bad field."""
        plates = set(images['Image_Metadata_Plate_DAPI'])
        folders = {part for f in files for part in PurePosixPath(f).parent.parts}
        packed = sorted(z for z in files if (m := ZIP.fullmatch(PurePosixPath(z).name)) and m.group(1) in plates
                        and m.group(1) not in folders)
        if packed:
            raise PrepareError(f'{ctx.raw}: {len(packed)} plate zip(s) not extracted ({", ".join(packed[:3])}'
                               f'{", ..." if len(packed) > 3 else ""}); unzip them there (each unpacks to '
                               f'<plate>/), e.g. `cd {ctx.raw} && for z in BBBC021_v1_images_*.zip; do unzip -q "$z"; done`')

    def _split(self, ctx: Context, items: list[dict], fraction: float) -> dict:
        rng = random.Random(ctx.seed)
        if ctx.options['split_by'] == 'plate':
            test_plates = set(pick_test(list({f['plate'] for f in items}), fraction, rng))
            for f in items:
                f['split'] = 'test' if f['plate'] in test_plates else 'train'
            return {'split_rule': f'by plate, seed {ctx.seed}: {len(test_plates)} plates ({fraction:.0%}) test, '
                                  f'the rest train; no plate in both',
                    'test_plates': sorted(test_plates)}
        by_moa = defaultdict(set)
        for f in items:
            if f['compound'] != CONTROL:
                by_moa[f['label']].add(f['compound'])
        test_compounds = {moa: pick_test(list(cs), fraction, rng) for moa, cs in sorted(by_moa.items())}
        held = {c for cs in test_compounds.values() for c in cs}
        dmso_test_plates = set(pick_test(list({f['plate'] for f in items if f['compound'] == CONTROL}), fraction, rng))
        for f in items:
            held_out = (f['plate'] in dmso_test_plates) if f['compound'] == CONTROL else (f['compound'] in held)
            f['split'] = 'test' if held_out else 'train'
        return {'split_rule': f'by compound, seed {ctx.seed}: within each MoA round({fraction} x compounds) '
                              f'(at least 1, never all) compounds test; {CONTROL} fields by plate, same share; '
                              f'no compound (no {CONTROL} plate) in both splits',
                'test_compounds': test_compounds,
                'test_plates_dmso': sorted(dmso_test_plates),
                'moa_without_test_compound': sorted(m for m, cs in test_compounds.items() if not cs)}

    def build(self, ctx: Context, plan: Plan, writer: DatasetWriter) -> dict:
        by_plate = defaultdict(list)
        for f in plan.items:
            by_plate[f['plate']].append(f)
        ordered = [f for _, fields in sorted(by_plate.items()) for f in fields]
        with tqdm(total=2 * len(ordered), desc='compound fields', unit='pass', disable=None) as bar:
            # Pass 1: per-channel windows over every pixel of each plate's readable fields.
            acc = {plate: {c.name: WindowAccumulator() for c in ctx.entry.channels} for plate in by_plate}
            kept = []
            with parallel_map(partial(_field_histograms, ctx), ordered, ctx.workers) as done:
                for f, (parts, error) in zip(ordered, done):
                    bar.update(1)
                    if error is not None:
                        ctx.report.bad(f['where'], error.removeprefix(f['where']).lstrip(': '))
                        bar.update(1)
                        continue
                    kept.append(f)
                    for name, part in parts.items():   # only whole fields count towards the window
                        acc[f['plate']][name].counts += part.counts
                        acc[f['plate']][name].deep |= part.deep
            win = {plate: {name: a.window(WINDOW_PERCENTILES) for name, a in chans.items()}
                   for plate, chans in acc.items()}
            windows = {plate: {name: list(w) if w else None for name, w in win[plate].items()}
                       for plate in sorted(by_plate)}
            # Pass 2: each field composed with its plate's windows (read again rather than held).
            with parallel_map(partial(_write_field, ctx, writer.files(), win), kept, ctx.workers) as done:
                for f, image in zip(kept, done):
                    writer.add_row(f['split'], {
                        'id': f['id'], 'image': image, 'answer': f['label'], 'compound': f['compound'],
                        'concentration': f['concentration'], 'plate': f['plate'], 'well': f['well'],
                        'replicate': f['replicate'], 'smiles': f['smiles']})
                    bar.update(1)
        lo, hi = WINDOW_PERCENTILES
        return {'windows': {'scope': f'per plate and channel: raw values at the {lo}/{hi} percentiles of all '
                                     f'pixels of the plate\'s prepared fields',
                            'plates': windows}}


def _field_histograms(ctx: Context, f: dict) -> tuple:
    """One field's value histogram per channel (a worker's job): (accumulators, error)."""
    try:
        parts = {}
        for c in ctx.entry.channels:
            plane, _ = stain_plane(f['paths'][c.name], f'{f["where"]} {c.source}', ctx.max_pixels)
            parts[c.name] = WindowAccumulator()
            parts[c.name].add(plane)
        return parts, None
    except ImageDecodeError as e:
        return None, str(e)


def _write_field(ctx: Context, files: DatasetWriter, windows: dict, f: dict) -> str:
    """One field composed with its plate's windows and written (a worker's job)."""
    planes = {}
    for c in ctx.entry.channels:
        plane, _ = stain_plane(f['paths'][c.name], f['where'], ctx.max_pixels)
        planes[c.name], _ = to_uint8(plane, windows[f['plate']][c.name])
    return files.save_png(f'images/{f["split"]}/{safe_name(f["id"])}.png', composite(planes, ctx.entry.channels))
