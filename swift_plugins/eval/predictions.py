"""Read a `swift infer --result_path` jsonl into validated predictions for one registry dataset.

Every row must carry the `chat_template_kwargs.medres` metadata written by `rows.py`. A file
holds one dataset, and ids are unique: the grid resumes and pairs arms by id, so duplicated or
foreign rows are an error with their counts and lines, never something to drop silently. Each row
also says how many rows its split has (`split_rows`), so `coverage` tells a complete file from one
that is missing rows (a killed run, skipped bad rows, a `#n` sample): `medres score` refuses a
partial file unless asked to score it (`--allow-partial`), and then reports n of N.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..data.jsonl import json_objects
from ..data.registry import Entry
from ..errors import PredictionsError


@dataclass(frozen=True)
class Prediction:
    id: str
    gold: str
    response: str
    # None when the row predates image keys; the scorer then clusters on the id.
    image_key: Optional[str]
    # Multiple choice: the row's options, when the inference rows carry them.
    choices: Optional[tuple[str, ...]]
    line: int
    # Caption tasks: the row's scored facts (column -> value), e.g. its cell line and localizations.
    targets: Optional[dict] = field(default=None, hash=False)
    # The user turn's text as the model saw it: the scorer reads lettered options from it.
    prompt: Optional[str] = None
    split: Optional[str] = None
    index: Optional[int] = None
    # How many rows the split has (None in files written before medres recorded it).
    split_rows: Optional[int] = None
    # The dataset's own id (registry `columns.id`) and where the image came from.
    source_id: Optional[str] = None
    image_ref: Optional[str] = None


def _prompt(row: dict) -> Optional[str]:
    messages = row.get('messages')
    if not isinstance(messages, list):
        return None
    users = [m.get('content') for m in messages if isinstance(m, dict) and m.get('role') == 'user']
    content = users[-1] if users else None
    if isinstance(content, list):  # multimodal content parts
        content = '\n'.join(p.get('text', '') for p in content if isinstance(p, dict) and isinstance(p.get('text'), str))
    return content if isinstance(content, str) else None


def _optional_int(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_row(path: Path, line_no: int, row: dict, dataset: str) -> Prediction | str:
    """The row's prediction, or (a row of another dataset) that dataset's name."""
    where = f'{path}:{line_no}'
    meta = (row.get('chat_template_kwargs') or {}).get('medres')
    if not isinstance(meta, dict) or not meta.get('id'):
        raise PredictionsError(f'{where}: no chat_template_kwargs.medres metadata with an id; '
                               'score predictions of a medres/<name> dataset made by `swift infer --result_path`')
    rid = str(meta['id'])
    if meta.get('dataset') != dataset:
        return str(meta.get('dataset'))
    gold = row.get('labels')
    if not isinstance(gold, str) or not gold.strip():
        raise PredictionsError(f'{where}: row {rid!r} has no gold answer in "labels"')
    response = row.get('response')
    if response is None:
        response = ''
    if not isinstance(response, str):
        raise PredictionsError(f'{where}: row {rid!r}: "response" must be a string, got {type(response).__name__}')
    choices = meta.get('choices')
    if choices is not None:
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise PredictionsError(f'{where}: row {rid!r}: medres.choices must be a list of strings')
        choices = tuple(choices)
    key = meta.get('image_key')
    targets = meta.get('targets')
    if targets is not None and not isinstance(targets, dict):
        raise PredictionsError(f'{where}: row {rid!r}: medres.targets must be an object, got {type(targets).__name__}')
    return Prediction(id=rid, gold=gold.strip(), response=response, image_key=str(key) if key else None,
                      choices=choices, line=line_no, split=meta.get('split'), index=_optional_int(meta.get('index')),
                      split_rows=_optional_int(meta.get('split_rows')),
                      source_id=None if meta.get('source_id') is None else str(meta['source_id']),
                      image_ref=meta.get('image_ref'), targets=targets, prompt=_prompt(row))


def read_predictions(path: str | Path, dataset: str) -> list[Prediction]:
    """All rows of `path`, checked to be from `dataset` and to have unique ids; otherwise one error
    with the counts of foreign and duplicated rows and where the first of each is."""
    path = Path(path)
    preds: list[Prediction] = []
    first_line: dict[str, int] = {}
    foreign: Counter = Counter()
    foreign_first: Optional[int] = None
    duplicates: list[tuple[str, int, int]] = []
    for line_no, row in json_objects(path, PredictionsError):
        pred = _parse_row(path, line_no, row, dataset)
        if isinstance(pred, str):
            foreign[pred] += 1
            foreign_first = foreign_first or line_no
            continue
        if pred.id in first_line:
            duplicates.append((pred.id, first_line[pred.id], line_no))
            continue
        first_line[pred.id] = line_no
        preds.append(pred)
    problems = []
    if foreign:
        kinds = ', '.join(f'{n} of {d!r}' for d, n in foreign.most_common())
        problems.append(f'{sum(foreign.values())} rows of another dataset ({kinds}; first at line {foreign_first}); '
                        f'a predictions file holds one dataset')
    if duplicates:
        rid, a, b = duplicates[0]
        problems.append(f'{len(duplicates)} duplicated rows (id {rid!r} at lines {a} and {b} first); each question must '
                        f'be predicted once')
    if problems:
        raise PredictionsError(f'{path}: {len(preds)} rows of {dataset!r}, but ' + '; '.join(problems))
    if not preds:
        raise PredictionsError(f'{path}: no predictions')
    return preds


@dataclass
class Coverage:
    """How many of the split rows a predictions file answers (n of N), per split and in all."""
    n: int
    total: Optional[int]                                   # None when no row says how many it should be
    missing: dict[str, list[int]] = field(default_factory=dict)   # split -> missing row indices
    unknown_splits: list[str] = field(default_factory=list)       # splits whose size nothing states

    @property
    def complete(self) -> bool:
        return self.total is not None and self.n == self.total and not self.unknown_splits

    def describe(self) -> str:
        total = '?' if self.total is None else f'{self.total:,}'
        return f'{self.n:,} of {total} rows'

    def missing_text(self, shown: int = 10) -> str:
        parts = []
        for split, rows in self.missing.items():
            head = ', '.join(map(str, rows[:shown])) + (f' and {len(rows) - shown} more' if len(rows) > shown else '')
            parts.append(f'{split}: {len(rows):,} missing (rows {head})')
        return '; '.join(parts)


def coverage(preds: Sequence[Prediction], entry: Entry) -> Coverage:
    """n of N over the splits the file's rows come from. N is each split's row count as the rows
    record it (`split_rows`), else the registry's declared `rows`."""
    by_split: dict[str, list[Prediction]] = {}
    for p in preds:
        by_split.setdefault(p.split or '?', []).append(p)
    total, missing, unknown = 0, {}, []
    for split, rows in by_split.items():
        stated = {p.split_rows for p in rows if p.split_rows is not None}
        if len(stated) > 1:
            raise PredictionsError(f'{entry.registered_name} split={split}: rows disagree on the split size '
                                   f'({sorted(stated)}); predictions of different loads are mixed in one file')
        declared = entry.splits[split].rows if split in entry.splits else None
        n_split = stated.pop() if stated else declared
        if n_split is None:
            unknown.append(split)
            continue
        total += n_split
        present = {p.index for p in rows if p.index is not None}
        gone = sorted(set(range(n_split)) - present)
        if gone or len(present) < len(rows):
            missing[split] = gone
    return Coverage(len(preds), None if unknown else total, missing, unknown)
