"""Read a `swift infer --result_path` jsonl into validated predictions for one registry dataset.

Every row must carry the `chat_template_kwargs.medres` metadata written by `rows.py`. A file
holds one dataset, and ids are unique: the grid resumes and pairs arms by id, so a duplicate or
a foreign row is an error naming the line, never something to drop silently.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

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


def _prompt(row: dict) -> Optional[str]:
    messages = row.get('messages')
    if not isinstance(messages, list):
        return None
    users = [m.get('content') for m in messages if isinstance(m, dict) and m.get('role') == 'user']
    content = users[-1] if users else None
    if isinstance(content, list):  # multimodal content parts
        content = '\n'.join(p.get('text', '') for p in content if isinstance(p, dict) and isinstance(p.get('text'), str))
    return content if isinstance(content, str) else None


def _parse_line(path: Path, line_no: int, text: str, dataset: str) -> Prediction:
    where = f'{path}:{line_no}'
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        raise PredictionsError(f'{where}: not valid JSON: {e}') from None
    if not isinstance(row, dict):
        raise PredictionsError(f'{where}: expected a JSON object, got {type(row).__name__}')
    meta = (row.get('chat_template_kwargs') or {}).get('medres')
    if not isinstance(meta, dict) or not meta.get('id'):
        raise PredictionsError(f'{where}: no chat_template_kwargs.medres metadata with an id; '
                               'score predictions of a medres/<name> dataset made by `swift infer --result_path`')
    rid = str(meta['id'])
    if meta.get('dataset') != dataset:
        raise PredictionsError(f'{where}: row {rid!r} is from dataset {meta.get("dataset")!r}, not {dataset!r} '
                               '(a predictions file holds one dataset)')
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
                      choices=choices, line=line_no, targets=targets, prompt=_prompt(row))


def read_predictions(path: str | Path, dataset: str) -> list[Prediction]:
    """All rows of `path`, checked to be from `dataset` and to have unique ids."""
    path = Path(path)
    preds: list[Prediction] = []
    first_line: dict[str, int] = {}
    try:
        with open(path, encoding='utf-8') as f:  # line by line: rows may carry image bytes
            for line_no, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                pred = _parse_line(path, line_no, text, dataset)
                if pred.id in first_line:
                    raise PredictionsError(f'{path}:{line_no}: duplicate id {pred.id!r} (first at line '
                                           f'{first_line[pred.id]}); each question must be predicted once')
                first_line[pred.id] = line_no
                preds.append(pred)
    except (OSError, UnicodeDecodeError) as e:
        raise PredictionsError(f'{path}: cannot read: {e}') from None
    if not preds:
        raise PredictionsError(f'{path}: no predictions')
    return preds
