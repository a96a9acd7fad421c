"""Bad rows of a split, collected whole and reported one way by the loader and `medres tokens`.

A split is read to its end before anything is reported, so the first bad row (by row index) is
the one named, with the count, the first few and a jsonl file listing every one of them
(`<data home>/bad-rows/<dataset>.<split>.jsonl`, rewritten at each load of that split).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..settings import Settings
from ..vocabulary import BAD_ROWS_SHOWN, Env


@dataclass(frozen=True)
class BadRow:
    index: int
    reason: str      # the full message; it starts with where: dataset, split, row (and file)


def bad_rows_path(settings: Settings, dataset: str, split: str) -> Path:
    return settings.data_home / 'bad-rows' / f'{dataset}.{split}.jsonl'


def write_bad_rows(path: Path, dataset: str, split: str, rows: Sequence[BadRow]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w', encoding='utf-8') as f:
        for r in rows:
            f.write(json.dumps({'dataset': dataset, 'split': split, 'row': r.index, 'reason': r.reason},
                               ensure_ascii=False) + '\n')
    tmp.replace(path)
    return path


def rows_list(rows: Sequence[BadRow]) -> str:
    shown = ', '.join(str(r.index) for r in rows[:BAD_ROWS_SHOWN])
    return shown + (f' and {len(rows) - BAD_ROWS_SHOWN} more' if len(rows) > BAD_ROWS_SHOWN else '')


def _from(source: str) -> str:
    return f', read from {source}' if source else ''


def summary(label: str, total: int, rows: Sequence[BadRow], path: Path, source: str = '') -> str:
    """Multi-line: the count, the first `BAD_ROWS_SHOWN` with their reasons, the file with all."""
    lines = [f'{len(rows)} of {total} rows of {label} are bad (rows {rows_list(rows)}{_from(source)}); all listed in '
             f'{path}:']
    lines += [f'  {r.reason}' for r in rows[:BAD_ROWS_SHOWN]]
    return '\n'.join(lines)


def stop_message(label: str, total: int, rows: Sequence[BadRow], path: Path, source: str = '') -> str:
    """One line: the first bad row's own message, then the count and where all are listed."""
    more = (f'; {len(rows)} of {total} rows of {label} are bad (rows {rows_list(rows)}{_from(source)}), all listed in '
            f'{path}' if len(rows) > 1 else f' (listed in {path}{_from(source)})')
    return f'{rows[0].reason}{more}; {Env.BAD_ROWS}=skip drops bad rows instead'


def all_skipped_message(label: str, total: int, rows: Sequence[BadRow], path: Path, source: str = '',
                        why: str = f'{Env.BAD_ROWS}=skip') -> str:
    return (f'all {total} rows of {label} were skipped as bad ({why}{_from(source)}), nothing is left to load; '
            f'the first: {rows[0].reason}; all listed in {path}')
