"""Turn one source row of a registry dataset into an ms-swift row (`messages` + `images`).

The converter is an ms-swift `RowPreprocessor`, so it runs inside ms-swift's own cached,
multi-process `dataset.map`. Unlike ms-swift's default (log and drop a failing row), every row of
the split is converted and every bad one recorded; at the end of the split, loading stops naming
the first bad row, with a summary of all of them (count, the first ten, a file listing every one),
unless the user opts into skipping (`MEDRES_BAD_ROWS=skip`: the same summary as a warning, the
rows dropped, and the mixed-resolution slots assigned over the rows that remain). Before any row
is converted: the declared row count is checked against the data, and a user id column for
duplicates. Images go through the one image path (`decode.model_image`), with the family of the
run's template, so what the model cannot encode is refused here, not mid-run.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Optional

from swift.dataset import RowPreprocessor
from swift.utils import get_logger

from ..errors import DataError, RegistryError
from ..resolution.families import Family
from ..resolution.mixing import sample_id
from ..resolution.policy import ResolutionPolicy
from ..settings import Settings
from ..vocabulary import Env
from .bad_rows import BadRow, all_skipped_message, bad_rows_path, stop_message, summary, write_bad_rows
from .decode import model_image
from .images import image_payload
from .registry import Entry
from .sources import RowCount

logger = get_logger()

INDEX_COLUMN = '__medres_index'
# A bad row travels through ms-swift's map as a valid placeholder carrying its reason, so that
# rows converted in worker processes (or read back from the map cache) still report why.
_BAD_TEXT = 'medres: bad row'


def with_row_index(dataset):
    """Add the source row index, the stable identity of a row within a split."""
    from datasets import Dataset
    if isinstance(dataset, Dataset):
        return dataset.add_column(INDEX_COLUMN, list(range(len(dataset))))
    return dataset.map(lambda _, i: {INDEX_COLUMN: i}, with_indices=True)


def image_key(payload) -> str:
    data = payload if isinstance(payload, (bytes, bytearray)) else os.path.abspath(payload).encode()
    return hashlib.sha1(data).hexdigest()[:16]


def format_question(entry: Entry, question: str, choices: Optional[list[str]] = None,
                    split: Optional[str] = None) -> str:
    template = entry.question_template(split) if split else entry.prompt.question
    return template.format(
        question=question.strip(),
        labels=', '.join(entry.labels or []),
        # One option per line: options contain commas ("positive, indicating residual cancer").
        choices='\n'.join(choices or []),
    )


class RowConverter(RowPreprocessor):
    """Registry entry + split -> ms-swift rows with per-row `medres` metadata."""

    def __init__(self, entry: Entry, split: str, settings: Settings, policy: Optional[ResolutionPolicy],
                 base_dir: Optional[str] = None, *, family: Optional[Family] = None,
                 expected: Optional[RowCount] = None, source: str = '', predicts: Optional[bool] = None) -> None:
        image_col = entry.columns.image
        super().__init__(columns={image_col: 'images'} if image_col != 'images' else None)
        self.entry = entry
        self.split = split
        self.settings = settings
        self.policy = policy
        # Local sources (jsonl + image files) store image paths relative to their folder.
        self.base_dir = base_dir
        self.family = family
        self.expected = expected
        self.source = source
        # Unset: a training run stops on a bad row; `swift infer` predicts the others and names it.
        self.mode = settings.bad_rows or ('skip' if predicts else 'error')
        self.label = f'{entry.registered_name}:{split}'
        self.n_rows: Optional[int] = None
        self.streaming = False
        self._fatal: Optional[DataError] = None
        self.mix: Optional[list[tuple[int, int, int]]] = None

    # --- the whole split ---------------------------------------------------------------

    def _mixed_balanced(self) -> bool:
        p = self.policy
        return p is not None and p.mode == 'mixed' and p.balance != 'none'

    def _assign_mix(self, n: int, indices: Optional[list[int]] = None) -> Optional[dict[int, tuple[int, int, int]]]:
        """Mixed resolution: each row's balanced slot over the rows the run keeps (all, before loading)."""
        if not self._mixed_balanced():
            return None
        slots = self.policy.slots(self.entry.name, self.entry.modality, self.split, n, indices=indices)
        rows = range(n) if indices is None else indices
        return {i: (s.pos, s.n, s.k) for i, s in zip(rows, slots)}

    def _check_columns(self, dataset) -> None:
        features = dataset.features if dataset.features is not None else dataset._resolve_features().features
        c = self.entry.columns
        wanted = {'columns.image': c.image, 'columns.question': c.question, 'columns.answer': c.answer,
                  'columns.choices': c.choices, 'columns.id': c.id}
        wanted.update({f'task.targets.{metric}': col for metric, col in self.entry.task.targets.items()})
        for field, col in wanted.items():
            if col is not None and col not in features:
                raise RegistryError(f"{self.entry.path}: field '{field}': column {col!r} is not in "
                                    f'{self.entry.registered_name} split {self.split!r} '
                                    f'(columns: {sorted(k for k in features if k != INDEX_COLUMN)})')

    def _check_count(self, n: int) -> None:
        exp = self.expected
        if exp is None or exp.rows == n:
            return
        msg = (f'{self.entry.registered_name} split={self.split}: {exp.stated_in} says {exp.rows:,} rows, the data '
               f'({self.source}) has {n:,}')
        if exp.strict:
            raise DataError(msg + '; a partial download or an edited split? Fix the data or the stated count')
        logger.warning(f'medres: {msg} (a local copy that is a subset?)')

    def _check_ids(self, dataset) -> None:
        col = self.entry.columns.id
        if col is None:
            return
        first: dict[str, int] = {}
        dups = []
        for i, value in enumerate(dataset[col]):
            key = '' if value is None else str(value).strip()
            if not key:
                raise DataError(f'{self.entry.registered_name} split={self.split} row={i}: empty id in column {col!r}')
            if key in first:
                dups.append((key, first[key], i))
            else:
                first[key] = i
        if dups:
            key, a, b = dups[0]
            raise DataError(f'{self.entry.registered_name} split={self.split}: id {key!r} of column {col!r} is on rows '
                            f'{a} and {b}' + (f' ({len(dups)} repeated ids in all)' if len(dups) > 1 else '') +
                            '; ids must be unique within a split')

    def __call__(self, dataset, **kwargs):
        from datasets import Dataset
        dataset = with_row_index(dataset)
        self._check_columns(dataset)
        self.streaming = not isinstance(dataset, Dataset)
        if self.streaming:
            if self._mixed_balanced():
                logger.warning(f'medres: {self.entry.registered_name} is streamed, so its mixed-resolution draw cannot '
                               f'be balanced; drawing each row independently ({Env.MIX_BALANCE}=none)')
            return super().__call__(dataset, **kwargs)
        self.n_rows = len(dataset)
        self._check_count(self.n_rows)
        self._check_ids(dataset)
        slots = self._assign_mix(self.n_rows)
        self.mix = None if slots is None else [slots[i] for i in range(self.n_rows)]
        return self._finish(super().__call__(dataset, **kwargs))

    def _finish(self, out):
        """Report the split's bad rows; drop them (skip mode) and re-balance the mixed slots."""
        metas = [(kw or {}).get('medres') or {} for kw in out['chat_template_kwargs']]
        bad = sorted((BadRow(m['index'], m['bad']) for m in metas if 'bad' in m), key=lambda r: r.index)
        keep = [i for i, m in enumerate(metas) if 'bad' not in m]
        if bad:
            path = write_bad_rows(bad_rows_path(self.settings, self.entry.name, self.split), self.entry.name,
                                  self.split, bad)
            if self.mode != 'skip':
                logger.error('medres: ' + summary(self.label, self.n_rows, bad, path, self.source))
                raise DataError(stop_message(self.label, self.n_rows, bad, path, self.source))
            why = f'{Env.BAD_ROWS}=skip' if self.settings.bad_rows else f'predicting; {Env.BAD_ROWS}=error stops instead'
            if not keep:
                raise DataError(all_skipped_message(self.label, self.n_rows, bad, path, self.source, why))
            logger.warning(f'medres: skipping ({why}) ' +
                           summary(self.label, self.n_rows, bad, path, self.source))
            out = out.select(keep)
        kept = [metas[i]['index'] for i in keep]
        if self.mix is not None and len(kept) != self.n_rows:
            out = self._reslot(out, kept)
        return out

    def _reslot(self, out, kept: list[int]):
        """Slots over the rows left (bad or unsampled rows gone), so the split is exactly p / 1 - p."""
        slots = self._assign_mix(len(kept), kept)

        def assign(kwargs_batch):
            for kw in kwargs_batch:
                pos, n, k = slots[kw['medres']['index']]
                kw['medres']['mix'] = {'pos': pos, 'n': n, 'k': k}
            return {'chat_template_kwargs': kwargs_batch}

        return out.map(assign, batched=True, input_columns=['chat_template_kwargs'], features=out.features,
                       desc=f'medres: mixed slots of {self.label}')

    # --- one row -------------------------------------------------------------------------

    def batched_preprocess(self, batched_row: dict[str, Any], *, strict: bool,
                           ignore_max_length_error: bool) -> dict[str, Any]:
        res = super().batched_preprocess(batched_row, strict=strict, ignore_max_length_error=ignore_max_length_error)
        if self._fatal is not None:
            raise self._fatal
        return res

    def preprocess(self, row: dict[str, Any]) -> Optional[dict[str, Any]]:
        index = row[INDEX_COLUMN]
        where = f'{self.entry.registered_name} split={self.split} row={index}'
        try:
            return self._convert(row, index, where)
        except Exception as e:  # every failure names its row; none is dropped silently
            err = e if isinstance(e, DataError) else DataError(f'{where}: {type(e).__name__}: {e}')
            if not self.streaming:
                return {'messages': [{'role': 'user', 'content': _BAD_TEXT}, {'role': 'assistant', 'content': _BAD_TEXT}],
                        'images': [],   # a batch of only bad rows keeps the columns of the others
                        'chat_template_kwargs': {'medres': {'index': index, 'bad': str(err)}}}
            if self.mode == 'skip':
                logger.warning(f'medres: skipping {err} ({Env.BAD_ROWS}=skip)')
                return None
            if self._fatal is None:   # the first bad row of the batch, not the last
                self._fatal = err
            return None

    def _image_ref(self, value, payload, index: int) -> str:
        """Where the row's image came from: its file, or the source, split and row (+ stored name)."""
        if isinstance(payload, str):
            return payload
        name = value.get('path') if isinstance(value, dict) else None
        hub_split = self.entry.splits[self.split].hub_split
        return f'{self.source} split={hub_split} row={index}' + (f' file={name}' if name else '')

    def _check_answer(self, row: dict[str, Any], where: str) -> tuple[str, Optional[list[str]]]:
        entry, cols = self.entry, self.entry.columns
        raw = row.get(cols.answer)
        answer = '' if raw is None else str(raw).strip()
        if not answer:
            raise DataError(f'{where}: empty answer in column {cols.answer!r}')
        options = entry.answer_options()
        if options is not None and entry.canonical_answer(answer, options) is None:
            what = 'label' if entry.task.kind == 'classification' else 'closed answer'
            field = 'labels' if entry.task.kind == 'classification' or not entry.task.closed_answers \
                else 'task.closed_answers'
            raise DataError(f'{where}: {what} {answer!r} is not one of {options} ({entry.path}: field {field!r})')
        choices = None
        if cols.choices:
            value = row.get(cols.choices)
            if not isinstance(value, (list, tuple)) or not value or not all(isinstance(c, str) for c in value):
                raise DataError(f'{where}: column {cols.choices!r} must hold a list of option strings, got {value!r}')
            choices = list(value)
            if answer not in choices:
                raise DataError(f'{where}: answer {answer!r} is not among its choices {choices}')
        return answer, choices

    def _convert(self, row: dict[str, Any], index: int, where: str) -> dict[str, Any]:
        entry, cols = self.entry, self.entry.columns
        value = row.get('images')
        payload = image_payload(value)
        if payload is None:
            raise DataError(f'{where}: the row has no image in column {cols.image!r}')
        if isinstance(payload, str) and self.base_dir and not os.path.isabs(payload):
            payload = os.path.join(self.base_dir, payload)
        answer, choices = self._check_answer(row, where)
        question = ''
        if cols.question:
            question = str(row.get(cols.question) or '').strip()
            if not question:
                raise DataError(f'{where}: empty question in column {cols.question!r}')
        image_where = f'{where} file={payload}' if isinstance(payload, str) else where
        image = model_image(payload, image_where, max_pixels=self.settings.max_image_pixels, channels=entry.channels,
                            family=self.family, policy=self.policy, pad=self.settings.pad_aspect)

        meta = {
            'id': sample_id(entry.name, self.split, index),
            'dataset': entry.name,
            'split': self.split,
            'index': index,
            # How many rows the split has: `medres score` checks a predictions file covers them all.
            'split_rows': self.n_rows,
            'modality': entry.modality,
            'width': image.width,
            'height': image.height,
            'source_mode': image.source_mode,
            # Questions sharing an image are not independent: CIs cluster on this.
            'image_key': image_key(payload),
            'image_ref': self._image_ref(value, payload, index),
        }
        if cols.id is not None:
            meta['source_id'] = str(row.get(cols.id)).strip()
        if image.padded_from is not None:
            meta['padded_from'] = list(image.padded_from)
        if choices is not None:
            meta['choices'] = choices  # the scorer parses a multiple-choice answer against these
        if entry.task.targets:
            # A caption is scored on facts of its row (cell line, localizations), not on its wording.
            meta['targets'] = {col: row.get(col) for col in entry.task.targets.values()}
        if self.mix is not None:
            pos, n, k = self.mix[index]
            meta['mix'] = {'pos': pos, 'n': n, 'k': k}
        payload_key = 'bytes' if isinstance(image.payload, bytes) else 'path'
        return {
            'messages': [
                {'role': 'system', 'content': entry.prompt.system},
                {'role': 'user', 'content': '<image>' + format_question(entry, question, choices, self.split)},
                {'role': 'assistant', 'content': answer},
            ],
            'images': [{'bytes': None, 'path': None, payload_key: image.payload}],
            # The only per-row field ms-swift carries from dataset to template and into
            # `swift infer`'s result jsonl; the resolution policy and the scorer read it.
            'chat_template_kwargs': {'medres': meta},
        }
