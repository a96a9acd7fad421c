"""Cervical: Hussain et al. 2020 liquid-based cytology Pap smears (Mendeley Data, 963 JPEGs).

The download is one folder per Bethesda class. Folder names circulate in several spellings
(the Mendeley names with spaces, underscore and hyphen variants, and the short codes), so a
folder is matched on its name with case and separators ignored. The split is stratified by class
with a fixed seed: 200 test images, as the paper used; the rest train. An image's id is
`<class>/<file stem>`: nothing upstream keeps two class folders from holding equal file names, and the
class tells them apart; two files of one id (the same class under two folder spellings, or `x.jpg`
beside `x.png`) are a duplicate.
"""
from __future__ import annotations

import argparse
import os
import random
from collections import Counter
from functools import partial
from pathlib import Path

from tqdm import tqdm

from ..data.channels import decode_rgb, is_plain_rgb
from ..errors import ImageDecodeError, PrepareError
from ..vocabulary import PAPER_CERVICAL_TEST_IMAGES
from .common import Context, Converter, DatasetWriter, Plan, parallel_map, safe_name

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp'}
# Folder-name spellings (lower case, letters and digits only) -> registry label.
FOLDER_ALIASES = {
    'negativeforintraepithelialmalignancy': 'NILM',
    'negativeforintraepitheliallesionormalignancy': 'NILM',
    'nilm': 'NILM',
    'lowsquamousintraepitheliallesion': 'LSIL',
    'lowgradesquamousintraepitheliallesion': 'LSIL',
    'lsil': 'LSIL',
    'highsquamousintraepitheliallesion': 'HSIL',
    'highgradesquamousintraepitheliallesion': 'HSIL',
    'hsil': 'HSIL',
    'squamouscellcarcinoma': 'SCC',
    'scc': 'SCC',
}


def folder_key(name: str) -> str:
    return ''.join(c for c in name.lower() if c.isalnum())


def stratified_test(groups: dict[str, list[str]], test_size: int, seed: int) -> set[str]:
    """`test_size` ids, each class's share proportional to its size (largest remainder), seeded."""
    total = sum(len(ids) for ids in groups.values())
    quotas = {label: len(ids) * test_size / total for label, ids in groups.items()}
    counts = {label: int(q) for label, q in quotas.items()}
    by_remainder = sorted(groups, key=lambda label: (counts[label] - quotas[label], label))
    for label in by_remainder[: test_size - sum(counts.values())]:
        counts[label] += 1
    rng = random.Random(seed)
    test = set()
    for label in sorted(groups):
        ids = sorted(groups[label])
        rng.shuffle(ids)
        test.update(ids[: counts[label]])
    return test


class CervicalConverter(Converter):
    name = 'cervical'
    help = 'Hussain et al. 2020 liquid-based cytology (class folders of JPEGs)'
    raw_help = 'the extracted Mendeley download: one folder per class (any depth)'

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--test-size', type=int, default=PAPER_CERVICAL_TEST_IMAGES,
                            help=f'test images, stratified by class (default: {PAPER_CERVICAL_TEST_IMAGES}, as the paper)')

    def plan(self, ctx: Context) -> Plan:
        labels = set(ctx.entry.labels)
        unknown_targets = sorted(set(FOLDER_ALIASES.values()) - labels)
        if unknown_targets:
            raise PrepareError(f'{ctx.entry.path}: labels {sorted(labels)} lack the class(es) {unknown_targets} '
                               f'that the class folders map to')
        found: list[tuple[str, str, Path]] = []   # (label, id, path)
        folders: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(ctx.raw):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(('.', '__MACOSX')))
            d = Path(dirpath)
            rel = d.relative_to(ctx.raw)
            # The nearest enclosing class folder decides the label.
            label = next((FOLDER_ALIASES.get(folder_key(part)) for part in reversed(rel.parts)
                          if folder_key(part) in FOLDER_ALIASES), None)
            for f in sorted(filenames):
                p = d / f
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    ctx.report.exclude('not_an_image_file', (rel / f).as_posix())
                    continue
                if label is None:
                    ctx.report.bad((rel / f).as_posix(), f'folder {rel.as_posix() or "."!r} is not a class folder '
                                   f'(label outside the set {ctx.entry.labels}; known folder names: '
                                   f'{sorted(set(FOLDER_ALIASES))})')
                    continue
                folders[rel.as_posix()] = label
                found.append((label, f'{label}/{p.stem}', p))
        if not found:
            raise PrepareError(f'{ctx.raw}: no images in class folders (expected folders such as '
                               f'"High squamous intra-epithelial lesion", "HSIL", ...)')
        by_id: dict[str, list] = {}
        for item in found:
            by_id.setdefault(item[1], []).append(item)
        items = []
        for image_id, hits in sorted(by_id.items()):
            if len(hits) > 1:
                for _, _, p in hits:
                    ctx.report.bad(p.relative_to(ctx.raw).as_posix(),
                                   f'duplicate id {image_id!r}: {len(hits)} files share this name '
                                   f'({", ".join(h[2].relative_to(ctx.raw).as_posix() for h in hits)})')
                continue
            items.append(hits[0])
        test_size = ctx.options['test_size']
        if not 0 < test_size < len(items):
            raise PrepareError(f'--test-size {test_size}: needs 0 < test size < {len(items)} images')
        # The split is drawn in `build`, over the images that decode.
        planned = [{'id': i, 'label': label, 'path': p} for label, i, p in items]
        stems = Counter(p.stem for _, _, p in items)
        facts = {'split_rule': f'stratified by class with seed {ctx.seed}: {test_size} test images '
                               f'(per-class share by largest remainder) drawn among the images that decode, '
                               f'the rest train',
                 'class_folders': folders,
                 'id_rule': '<class>/<file stem>',
                 'file_stems_in_several_classes': sorted(s for s, n in stems.items() if n > 1)}
        return Plan(planned, [p for _, _, p in found], facts)

    def build(self, ctx: Context, plan: Plan, writer: DatasetWriter) -> dict:
        copied, done = 0, []
        work = partial(_write_image, ctx.raw, writer.files(), ctx.max_pixels)
        with parallel_map(work, plan.items, ctx.workers) as results:
            for item, (image, was_copied, error) in zip(plan.items, tqdm(results, total=len(plan.items), unit='img',
                                                                         desc='cervical images', disable=None)):
                rel_src = item['path'].relative_to(ctx.raw).as_posix()
                if error is not None:
                    ctx.report.bad(rel_src, error)
                    continue
                copied += was_copied
                done.append((item, image, rel_src))
        # The split is drawn over the images that decode, so --test-size is met.
        test_size = ctx.options['test_size']
        if not 0 < test_size < len(done):
            raise PrepareError(f'--test-size {test_size}: only {len(done)} images decode; needs 0 < test size < {len(done)}')
        groups: dict[str, list[str]] = {}
        for item, _, _ in done:
            groups.setdefault(item['label'], []).append(item['id'])
        test = stratified_test(groups, test_size, ctx.seed)
        for item, image, rel_src in done:
            split = 'test' if item['id'] in test else 'train'
            writer.add_row(split, {'id': item['id'], 'image': writer.settle(image, split), 'answer': item['label'],
                                   'source_file': rel_src})
        writer.clear_staging()
        return {'images': {'copied_as_downloaded': copied,
                           'converted_to_png': sum(len(r) for r in writer.rows.values()) - copied}}


def _write_image(raw: Path, files: DatasetWriter, max_pixels: int, item: dict) -> tuple:
    """One image checked and written (a worker's job): (image path, copied as downloaded, error)."""
    rel_src = item['path'].relative_to(raw).as_posix()
    try:
        rgb, _ = decode_rgb(item['path'], f'cervical {rel_src}', max_pixels=max_pixels)
        stem = files.staged(f'{item["label"]}/{safe_name(item["path"].stem)}')   # its split is drawn later
        if is_plain_rgb(item['path']):  # copied as downloaded: re-encoding adds only bytes
            return files.copy(item['path'], stem + item['path'].suffix.lower()), True, None
        return files.save_png(stem + '.png', rgb), False, None
    except ImageDecodeError as e:
        return None, False, str(e)
