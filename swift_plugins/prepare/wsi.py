"""WSI: WSI-VQA (Chen et al., ECCV 2024) closed questions on TCGA-BRCA diagnostic slides.

Input: WsiVQA_{train,val,test}.json (items with Id = 12-character TCGA case id, Question, Answer,
and for closed items a Choice list) and the TCGA-BRCA diagnostic slides (.svs, `DX1` in the name),
matched to a case on the first 12 characters of the file name, as the WSI-VQA code does. Only the
closed (multiple-choice) items are kept; items whose Answer is not among their Choices (the train
file has some) and exact repeats are excluded and listed, never kept silently. Each slide is
rendered once (see `slides.py`) and every question of its case reuses that one image.

Options: the files put the right one at B far more often than chance (test: A/B/C/D = 107/151/86/46,
so always answering "B" scores 38.7%), so each closed item's options are shuffled by default, seeded by
(--option-seed, item id) so that an item's order never depends on the others; options stay verbatim
(some differ only by "+"/"-", "<"/">" or a decimal). Rows keep the file's order in `choices_original`;
--keep-option-order shows that order instead. The manifest gives the answer position distribution of
both orders, per split.
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from functools import partial
from pathlib import Path

from tqdm import tqdm

from ..data.slides import DEFAULT_DOWNSAMPLE, DEFAULT_MAX_PIXELS, render_slide
from ..errors import ImageDecodeError, PrepareError
from ..vocabulary import PAPER_SEED
from .common import Context, Converter, DatasetWriter, Plan, console, parallel_map, safe_name

SPLIT_FILES = {'train': 'WsiVQA_train.json', 'validation': 'WsiVQA_val.json', 'test': 'WsiVQA_test.json'}
SLIDE_SUFFIXES = {'.svs', '.tif', '.tiff'}
DIAGNOSTIC = 'DX1'
CASE_ID_LENGTH = 12
LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ'


def shuffle_options(choices: list[str], seed: int, item_id: str) -> list[str]:
    """`choices` in an order drawn from (seed, item id) alone: the same item always gets the same order."""
    order = list(choices)
    random.Random(f'{seed}/{item_id}').shuffle(order)
    return order


def positions(items: list[dict], key: str) -> dict[str, int]:
    """How often the answer sits at each letter, in the options under `key`."""
    return dict(sorted(Counter(LETTERS[it[key].index(it['answer'])] for it in items).items()))


def _json_files(raw: Path) -> dict[str, Path]:
    found = {}
    for split, name in SPLIT_FILES.items():
        hits = sorted(raw.rglob(name))
        if len(hits) > 1:
            raise PrepareError(f'{raw}: {len(hits)} files named {name}; point --raw at the folder holding one')
        if hits:
            found[split] = hits[0]
    if not found:
        raise PrepareError(f'{raw}: none of {sorted(SPLIT_FILES.values())} found')
    return found


class WsiVqaConverter(Converter):
    name = 'wsi'
    help = 'WSI-VQA closed questions on TCGA-BRCA diagnostic slides (json + .svs)'
    raw_help = 'folder with WsiVQA_{train,val,test}.json and the TCGA-BRCA DX1 slides (any depth)'

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument('--downsample', type=float, default=DEFAULT_DOWNSAMPLE,
                            help=f'render size as a fraction of level 0 (default {DEFAULT_DOWNSAMPLE}, as the '
                                 f'paper); the pyramid level nearest to it is used')
        parser.add_argument('--max-pixels', type=int, default=DEFAULT_MAX_PIXELS,
                            help=f'pixel budget of one render (default {DEFAULT_MAX_PIXELS:,}, about the '
                                 f'paper\'s 3000x4000); larger levels are resampled down to it')
        parser.add_argument('--option-seed', type=int, default=PAPER_SEED,
                            help=f'seed of the per-item option shuffle (default {PAPER_SEED})')
        parser.add_argument('--keep-option-order', action='store_true',
                            help='show the options in the json files\' order (the right one is mostly B)')

    def _slides(self, ctx: Context) -> dict[str, list[Path]]:
        by_case = defaultdict(list)
        for p in sorted(ctx.raw.rglob('*')):
            if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES:
                if DIAGNOSTIC in p.name:
                    by_case[p.name[:CASE_ID_LENGTH]].append(p)
                else:
                    ctx.report.exclude('not_a_DX1_slide', p.relative_to(ctx.raw).as_posix())
        return by_case

    def plan(self, ctx: Context) -> Plan:
        report = ctx.report
        scale, budget = ctx.options['downsample'], ctx.options['max_pixels']
        if not 0 < scale <= 1:
            raise PrepareError(f'--downsample {scale}: needs 0 < downsample <= 1')
        if budget <= 0:
            raise PrepareError(f'--max-pixels {budget}: needs a positive pixel budget')
        keep_order, option_seed = ctx.options.get('keep_option_order', False), ctx.options.get('option_seed', PAPER_SEED)
        jsons = _json_files(ctx.raw)
        slides = self._slides(ctx)
        items, cases_by_split = [], defaultdict(set)
        for split, path in jsons.items():
            try:
                data = json.loads(path.read_text(encoding='utf-8'))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise PrepareError(f'{path}: not valid JSON: {e}') from None
            if not isinstance(data, list):
                raise PrepareError(f'{path}: expected a list of items, got {type(data).__name__}')
            seen = set()
            for i, it in enumerate(data):
                where = f'{path.name} item {i}'
                if not isinstance(it, dict) or not all(isinstance(it.get(k), str) for k in ('Id', 'Question', 'Answer')):
                    report.bad(where, 'needs string fields Id, Question and Answer')
                    continue
                if 'Choice' not in it:
                    report.exclude('open_question', where)
                    continue
                choices = it['Choice']
                if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
                    report.bad(where, f'Choice must be a list of at least two strings, got {choices!r}')
                    continue
                if len(it['Id']) != CASE_ID_LENGTH:
                    report.bad(where, f'Id {it["Id"]!r} is not a {CASE_ID_LENGTH}-character TCGA case id')
                    continue
                if it['Answer'] not in choices:
                    report.exclude('answer_not_in_choices', {'item': where, 'Id': it['Id'], 'Question': it['Question'],
                                                             'Answer': it['Answer'], 'Choice': choices})
                    continue
                if len(set(choices)) != len(choices):
                    report.exclude('repeated_option', {'item': where, 'Choice': choices})
                    continue
                key = (it['Id'], it['Question'], tuple(choices), it['Answer'])
                if key in seen:
                    report.exclude('repeated_item', where)
                    continue
                seen.add(key)
                item_id = f'{path.name}#{i}'
                shown = choices if keep_order else shuffle_options(choices, option_seed, item_id)
                items.append({'id': item_id, 'where': where, 'split': split, 'case': it['Id'],
                              'question': it['Question'], 'choices': shown, 'choices_original': choices,
                              'answer': it['Answer']})
                cases_by_split[split].add(it['Id'])

        renders, inputs = {}, list(jsons.values())
        for case in sorted({it['case'] for it in items}):
            n = sum(it['case'] == case for it in items)
            hits = slides.get(case, [])
            if len(hits) > 1:
                report.bad(f'case {case}', f'duplicate id: {len(hits)} {DIAGNOSTIC} slides for this case '
                           f'({", ".join(p.name for p in hits)})', questions=n)
            elif not hits:
                report.bad(f'case {case}', f'slide file not found: no {DIAGNOSTIC} slide named {case}* under '
                           f'{ctx.raw}', questions=n)
            else:
                renders[case] = hits[0]
                inputs.append(hits[0])
        kept = [it for it in items if it['case'] in renders]
        if not kept:
            raise PrepareError(f'{ctx.raw}: no closed question has its case\'s {DIAGNOSTIC} slide')
        # The json files share some cases across splits; reported so that leakage is visible.
        splits_of = Counter(c for cases in cases_by_split.values() for c in cases)
        shared = sorted(c for c, n in splits_of.items() if n > 1)
        facts = {'split_rule': 'as distributed: WsiVQA_train/val/test.json -> train/validation/test',
                 'render_policy': {'downsample': scale, 'max_pixels': budget,
                                   'rule': 'pyramid level nearest the downsample, as stored, if within max_pixels; '
                                           'else the coarsest level at least the budget-fitting size, resampled '
                                           'down (Lanczos)'},
                 'cases_in_more_than_one_split': shared,
                 'option_order': {'shuffled': not keep_order, 'seed': None if keep_order else option_seed,
                                  'rule': 'as in the json files' if keep_order else
                                  f'per item: random.Random("{option_seed}/<item id>").shuffle(Choice); '
                                  f'the file order is kept in choices_original'}}
        unmatched = ctx.report.excluded.get('answer_not_in_choices', [])
        if unmatched:
            first = unmatched[0]
            console.print(f'wsi: excluded {len(unmatched)} item(s) whose Answer is not among their Choices '
                          f'(listed in the manifest under excluded.answer_not_in_choices), e.g. {first["item"]}: '
                          f'{first["Answer"]!r} not in {first["Choice"]}', highlight=False, markup=False)
        return Plan(kept, inputs, facts | {'slides': {c: p.relative_to(ctx.raw).as_posix() for c, p in renders.items()}})

    def build(self, ctx: Context, plan: Plan, writer: DatasetWriter) -> dict:
        by_case = defaultdict(list)
        for it in plan.items:
            by_case[it['case']].append(it)
        renders = {}
        cases = sorted(by_case)
        work = partial(_render_case, ctx.raw, writer.files(), plan.facts['slides'], ctx.options['downsample'],
                       ctx.options['max_pixels'], ctx.max_pixels)
        with parallel_map(work, cases, ctx.workers) as done:
            for case, (image, info, error) in zip(cases, tqdm(done, total=len(cases), desc='wsi slides', unit='slide',
                                                              disable=None)):
                case_items = by_case[case]
                slide = ctx.raw / plan.facts['slides'][case]
                if error is not None:
                    ctx.report.bad(f'case {case}', error.removeprefix(f'case {case} ').lstrip(': '),
                                   questions=len(case_items))
                    continue
                # One render per case, shared by every question (and split) of the case.
                renders[case] = {'slide': slide.name, 'image': image, 'questions': len(case_items), **info}
                for it in case_items:
                    writer.add_row(it['split'], {'id': it['id'], 'image': image, 'question': it['question'],
                                                 'choices': it['choices'], 'answer': it['answer'],
                                                 'choices_original': it['choices_original'], 'case_id': case,
                                                 'slide': slide.name})
        answer_positions = {split: {'shown': positions(rows, 'choices'), 'original': positions(rows, 'choices_original')}
                            for split, rows in writer.rows.items()}
        for split, pos in answer_positions.items():
            console.print(f'wsi: {split} answer positions {pos["shown"]} as shown (in the files: {pos["original"]})',
                          highlight=False, markup=False)
        return {'renders': renders, 'answer_positions': answer_positions,
                'cases': {s: len({r['case_id'] for r in rows}) for s, rows in writer.rows.items()}}


def _render_case(raw: Path, files: DatasetWriter, slides: dict, downsample, max_render_pixels, max_pixels,
                 case: str) -> tuple:
    """One slide rendered and written (a worker's job): (image path, render facts, error)."""
    slide = raw / slides[case]
    try:
        im, info = render_slide(slide, f'case {case} ({slide.name})', downsample, max_render_pixels, max_pixels)
    except ImageDecodeError as e:
        return None, None, str(e)
    return files.save_png(f'images/slides/{safe_name(case)}.png', im), info, None
