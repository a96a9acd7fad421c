"""Turn one source row of a registry dataset into an ms-swift row (`messages` + `images`).

The converter is an ms-swift `RowPreprocessor`, so it runs inside ms-swift's own cached,
multi-process `dataset.map`. Unlike ms-swift's default (log and drop a failing row), a row that
cannot be converted stops loading with the dataset, split and row index in the message, unless
the user opts into skipping (`MEDRES_BAD_ROWS=skip`), which logs every skipped row.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any, Optional

from swift.dataset import RowPreprocessor
from swift.utils import get_logger

from ..errors import DataError, RegistryError
from ..resolution.mixing import sample_id
from ..resolution.policy import ResolutionPolicy
from ..settings import Settings
from ..vocabulary import Env
from .images import decode_to_rgb, image_payload
from .registry import Entry

logger = get_logger()

INDEX_COLUMN = '__medres_index'


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
                 base_dir: Optional[str] = None) -> None:
        image_col = entry.columns.image
        super().__init__(columns={image_col: 'images'} if image_col != 'images' else None)
        self.entry = entry
        self.split = split
        self.settings = settings
        self.policy = policy
        # Local sources (jsonl + image files) store image paths relative to their folder.
        self.base_dir = base_dir
        self.mode = settings.bad_rows
        self._fatal: Optional[DataError] = None
        self.mix: Optional[list[tuple[int, int, int]]] = None

    def _assign_mix(self, dataset) -> None:
        """Mixed resolution: give each row its balanced slot now that the whole split is visible."""
        from datasets import Dataset
        policy = self.policy
        if policy is None or policy.mode != 'mixed' or policy.balance == 'none':
            return
        if not isinstance(dataset, Dataset):
            logger.warning(f'medres: {self.entry.registered_name} is streamed, so its mixed-resolution draw '
                           f'cannot be balanced; drawing each row independently ({Env.MIX_BALANCE}=none)')
            return
        slots = policy.slots(self.entry.name, self.entry.modality, self.split, len(dataset))
        self.mix = [(s.pos, s.n, s.k) for s in slots]

    def _check_columns(self, dataset) -> None:
        features = dataset.features if dataset.features is not None else dataset._resolve_features().features
        c = self.entry.columns
        wanted = {'columns.image': c.image, 'columns.question': c.question, 'columns.answer': c.answer,
                  'columns.choices': c.choices}
        wanted.update({f'task.targets.{metric}': col for metric, col in self.entry.task.targets.items()})
        for field, col in wanted.items():
            if col is not None and col not in features:
                raise RegistryError(f"{self.entry.path}: field '{field}': column {col!r} is not in "
                                    f'{self.entry.registered_name} split {self.split!r} '
                                    f'(columns: {sorted(k for k in features if k != INDEX_COLUMN)})')

    def __call__(self, dataset, **kwargs):
        dataset = with_row_index(dataset)
        self._check_columns(dataset)
        self._assign_mix(dataset)
        return super().__call__(dataset, **kwargs)

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
            if self.mode == 'skip':
                logger.warning(f'medres: skipping {err} ({Env.BAD_ROWS}=skip)')
                return None
            self._fatal = err
            return None

    def _convert(self, row: dict[str, Any], index: int, where: str) -> dict[str, Any]:
        entry, cols = self.entry, self.entry.columns
        payload = image_payload(row.get('images'))
        if payload is None:
            raise DataError(f'{where}: the row has no image in column {cols.image!r}')
        if isinstance(payload, str) and self.base_dir and not os.path.isabs(payload):
            payload = os.path.join(self.base_dir, payload)
        image = decode_to_rgb(payload, where, self.settings.max_image_pixels)

        answer = row.get(cols.answer)
        answer = '' if answer is None else str(answer).strip()
        if not answer:
            raise DataError(f'{where}: empty answer in column {cols.answer!r}')
        # A caption's labels are the known values of its target, not of the description.
        if entry.labels is not None and entry.task.kind != 'caption' and answer not in entry.labels:
            raise DataError(f'{where}: label {answer!r} is not in the label set of {entry.path}')
        choices = None
        if cols.choices:
            choices = [str(c) for c in (row.get(cols.choices) or [])]
            if answer not in choices:
                raise DataError(f'{where}: answer {answer!r} is not among its choices {choices}')
        question = str(row.get(cols.question) or '') if cols.question else ''

        meta = {
            'id': sample_id(entry.name, self.split, index),
            'dataset': entry.name,
            'split': self.split,
            'index': index,
            'modality': entry.modality,
            'width': image.width,
            'height': image.height,
            'source_mode': image.source_mode,
            # Questions sharing an image are not independent: CIs cluster on this.
            'image_key': image_key(payload),
        }
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
